// Prometheus dashboard: small enhancements only. Every page works without this file.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  const text = source.value !== undefined && source.tagName !== "PRE" ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(text.trim());
    button.textContent = "Copied";
    button.setAttribute("data-copied", "true");
  } catch (err) {
    if (source.select) source.select();
    button.textContent = "Press Ctrl+C to copy";
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

document.addEventListener("change", (event) => {
  if (event.target.matches && event.target.matches("select[data-autosubmit]")) event.target.form.submit();
});

// Reveal panels hide their buttons' fallback text when script runs.
document.querySelectorAll("[data-copy]").forEach((button) => button.removeAttribute("hidden"));
