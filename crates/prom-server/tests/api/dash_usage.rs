//! The usage, audit log and members pages as a browser sees them: the tenant's calls and spend
//! with a chart and a CSV export; the audit log filtered, paged and exported; members added with
//! an invitation link that really lets them in, roles changed and members removed under the
//! role rules; and never a word of another tenant, never an unescaped string, never a formula a
//! spreadsheet would run.

use std::time::Duration;

use prom_core::access::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::allowance::{PRICE, approve, fund, paid_service, spawn, tool_call};
use crate::gateway::{register_priced, spawn_upstream};
use crate::pages::{Browser, Page};
use crate::support::{Cred, TestApp, TestUser, actions};

const SCRIPT: &str = "<script>alert(1)</script>";
/// How askama escapes [`SCRIPT`].
const ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";

/// The CSRF token on `path`'s page.
async fn csrf(browser: &Browser, path: &str) -> String {
    let page = browser.get(path).await;
    page.csrf().unwrap_or_else(|| panic!("no CSRF field on {path} ({}): {}", page.status, page.html))
}

/// Posts a form from `page` (with the CSRF token shown there) to `action`.
async fn submit(browser: &Browser, page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
    let token = csrf(browser, page).await;
    let mut all = vec![("csrf", token.as_str())];
    all.extend_from_slice(fields);
    browser.post_raw(action, &all).await
}

/// The `href` of the element with `id`, as a browser would follow it.
fn href(html: &str, id: &str) -> String {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {html}"));
    let tag_start = html[..at].rfind('<').expect("a tag");
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>').expect("a tag end")];
    let start = tag.find("href=\"").unwrap_or_else(|| panic!("#{id} has no href: {tag}")) + 6;
    let end = tag[start..].find('"').expect("the end of the href");
    unescape(&tag[start..start + end])
}

/// An attribute's text as the browser reads it.
fn unescape(text: &str) -> String {
    text.replace("&#34;", "\"").replace("&#39;", "'").replace("&#60;", "<").replace("&#62;", ">").replace("&#38;", "&")
}

fn header<'a>(page: &'a Page, name: &str) -> &'a str {
    page.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

fn assert_ok(page: &Page, what: &str) {
    assert_eq!(page.status, StatusCode::OK, "{what}: {}", page.html);
}

/// Flushes usage until `GET /v1/usage` shows `calls` requests for `user`'s tenant.
async fn wait_for_calls(app: &TestApp, user: &TestUser, calls: u64) {
    for _ in 0..50 {
        app.flush_usage().await;
        let (_, body) = user.get("/v1/usage").await;
        if body["calls"] == calls {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the usage of {} never reached {calls} calls", user.tenant);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_page_and_export_show_the_tenants_calls_and_spend_with_a_chart() {
    let app = spawn().await;
    let owner = paid_service(&app, 10_000).await;
    approve(&owner, json!({ "amount": (10 * PRICE).to_string() })).await;
    let label = format!("=HYPERLINK(\"http://evil.example\",\"x\"), {SCRIPT}");
    let (key_id, key) = owner.create_key(&label).await;
    assert!(tool_call(&app, "paid", &key, 1, "echo").await.get("result").is_some());
    assert!(tool_call(&app, "paid", &key, 2, "echo").await.get("result").is_some());
    // Another tenant's traffic, which acme must never see.
    let globex = app.with_owner("globex").await;
    fund(&app, &globex, 1_000).await;
    let (url, _) = spawn_upstream().await;
    register_priced(&app, &globex, "globex-tools", &url, &[]).await;
    let (_, globex_key) = globex.create_key("globex secret agent").await;
    assert!(tool_call(&app, "globex-tools", &globex_key, 1, "echo").await.get("result").is_some());
    wait_for_calls(&app, &owner, 2).await;
    wait_for_calls(&app, &globex, 1).await;

    let browser = Browser::of(&app, &owner);
    let by_day = browser.get("/app/usage").await;
    assert_ok(&by_day, "the usage page");
    assert!(
        by_day.html.contains("id=\"usage-table\"") && by_day.html.contains("<svg id=\"usage-chart\""),
        "{}",
        by_day.html
    );
    assert!(by_day.html.contains("role=\"img\" aria-label=\"Calls and spend per day from "), "{}", by_day.html);
    assert!(by_day.html.contains("2 calls, 200 charged in total"), "the chart sums the range: {}", by_day.html);
    let today = prom_core::time::Timestamp::now().date_string();
    assert!(by_day.html.contains(&format!("<title>{today}: 2 calls</title>")), "today's bar: {}", by_day.html);

    let by_key = browser.get("/app/usage?group=key").await;
    assert_ok(&by_key, "usage by key");
    assert!(by_key.html.contains(ESCAPED) && !by_key.html.contains(SCRIPT), "the label is escaped: {}", by_key.html);
    assert!(by_key.html.contains("<td class=\"num\">200</td>"), "the key's spend: {}", by_key.html);
    let by_service = browser.get("/app/usage?group=service").await;
    assert_ok(&by_service, "usage by service");
    assert!(by_service.html.contains("<td>paid"), "{}", by_service.html);
    for page in [&by_day, &by_key, &by_service] {
        assert!(!page.html.contains("globex"), "another tenant's usage shows: {}", page.html);
    }

    // The export carries the page's filters and neutralises the label's formula.
    let link = href(&by_key.html, "usage-csv");
    assert!(link.starts_with("/app/usage.csv?from=") && link.ends_with("&group=key"), "{link}");
    let csv = browser.get(&link).await;
    assert_ok(&csv, "the CSV export");
    assert_eq!(header(&csv, "content-type"), "text/csv; charset=utf-8");
    assert!(header(&csv, "content-disposition").starts_with("attachment; filename=\"usage-acme-"), "{:?}", csv.headers);
    let lines: Vec<&str> = csv.html.split("\r\n").collect();
    assert_eq!(lines[0], "key_id,label,display,calls,ok,errors,charged");
    let quoted = format!("{key_id},\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\"), {SCRIPT}\",");
    assert!(lines[1].starts_with(&quoted), "{}", csv.html);
    assert!(lines[1].ends_with(",2,2,0,200"), "{}", csv.html);
    assert_eq!(lines.len(), 3, "one key and a final line break: {}", csv.html);
    assert!(!csv.html.contains("globex"));

    // Globex sees its own and nothing of acme's; a bad date is explained.
    let theirs = Browser::of(&app, &globex).get("/app/usage.csv?group=key").await;
    assert!(theirs.html.contains("globex secret agent") && !theirs.html.contains("HYPERLINK"), "{}", theirs.html);
    let bad = browser.get("/app/usage?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.html.contains("from must be a date like 2026-03-01"), "{}", bad.html);
    assert_eq!(browser.get("/app/usage.csv?to=2026-13-01").await.status, StatusCode::BAD_REQUEST);
}

/// Creates a key through the API with `user_agent` as the request's User-Agent.
async fn create_key_as(user: &TestUser, label: &str, user_agent: &str) {
    let request = user
        .client
        .request(Method::POST, "/v1/keys", user.cred())
        .header("user-agent", user_agent)
        .json(&json!({ "label": label }));
    let response = user.client.send(request).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
}

/// The rows of the audit table.
fn audit_rows(html: &str) -> usize {
    html.matches("<time datetime=").count()
}

/// The body of the page's (first) table.
fn tbody(html: &str) -> &str {
    let start = html.find("<tbody>").unwrap_or_else(|| panic!("no table: {html}"));
    &html[start..start + html[start..].find("</tbody>").expect("the end of the table")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_filters_pages_escapes_and_exports_only_the_tenants_events() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let admin = app.with_user("acme", "admin@acme.example", Role::Admin).await;
    let member = app.with_user("acme", "member@acme.example", Role::Member).await;
    let globex = app.with_owner("globex").await;
    globex.create_key("globex secret agent").await;
    create_key_as(&admin, "=cmd|' /C calc'!A0", SCRIPT).await;
    for n in 0..55 {
        owner.create_key(&format!("agent {n}")).await;
    }
    let browser = Browser::of(&app, &owner);

    let first = browser.get("/app/audit").await;
    assert_ok(&first, "the audit log");
    assert_eq!(audit_rows(&first.html), 50, "fifty a page");
    assert!(first.html.contains("agent 54") && !first.html.contains("globex"), "{}", first.html);
    assert!(!first.html.contains("id=\"audit-newest\""), "the first page is the newest");
    let older = browser.get(&href(&first.html, "audit-older")).await;
    assert_ok(&older, "the older page");
    let rows = tbody(&older.html);
    assert!(rows.contains("agent 0") && rows.contains("member.add") && !rows.contains("agent 54"), "{rows}");
    assert!(!older.html.contains("globex"), "{}", older.html);
    assert!(older.html.contains(ESCAPED) && !older.html.contains(SCRIPT), "the user agent is escaped: {}", older.html);
    assert_eq!(href(&older.html, "audit-newest"), "/app/audit");

    // Filters: by action and actor together, kept by the Older link and the exports.
    let creations = browser.get("/app/audit?action=api_key.create&actor=owner%40acme.example").await;
    assert_ok(&creations, "filtered");
    assert_eq!(audit_rows(&creations.html), 50);
    let rows = tbody(&creations.html);
    assert!(!rows.contains("calc") && !rows.contains("user.login") && !rows.contains("member.add"), "{rows}");
    let older_link = href(&creations.html, "audit-older");
    assert!(
        older_link.starts_with("/app/audit?action=api_key.create&actor=owner%40acme.example&before="),
        "{older_link}"
    );
    let rest = browser.get(&older_link).await;
    assert_eq!(audit_rows(&rest.html), 5, "the last five of 55: {}", rest.html);
    assert!(!rest.html.contains("id=\"audit-older\""));
    let by_admin = browser.get("/app/audit?actor=admin%40acme.example&action=api_key.create").await;
    assert_eq!(audit_rows(&by_admin.html), 1, "{}", by_admin.html);
    assert!(by_admin.html.contains("=cmd|&#39; /C calc&#39;!A0"), "{}", by_admin.html);
    let bad = browser.get("/app/audit?action=api_key.explode").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.html.contains("there is no action &#34;api_key.explode&#34;"), "{}", bad.html);

    // Exports: every matching event (past one page), the CSV neutralised, the JSON as /v1/audit's.
    let csv = browser.get(&href(&first.html, "audit-csv")).await;
    assert_ok(&csv, "the CSV export");
    assert_eq!(header(&csv, "content-type"), "text/csv; charset=utf-8");
    assert!(header(&csv, "content-disposition").starts_with("attachment; filename=\"audit-acme-"));
    assert!(csv.html.starts_with(
        "id,at,action,actor_type,actor_id,actor_name,target_type,target_id,target_label,ip,user_agent,details\r\n"
    ));
    assert!(csv.html.contains(",'=cmd|' /C calc'!A0,") && !csv.html.contains(",=cmd"), "{}", csv.html);
    assert!(csv.html.contains(&format!(",{SCRIPT},")), "CSV is not HTML: {}", csv.html);
    assert!(!csv.html.contains("globex"));
    let all = owner.audit("?limit=500").await;
    assert_eq!(csv.html.matches("\r\n").count(), all.len() + 1, "every event and the header");

    let filtered = browser.get("/app/audit.json?action=api_key.create&actor=owner%40acme.example").await;
    assert_ok(&filtered, "the JSON export");
    assert_eq!(header(&filtered, "content-type"), "application/json");
    assert!(header(&filtered, "content-disposition").starts_with("attachment; filename=\"audit-acme-"));
    let events: Vec<Value> = serde_json::from_str(&filtered.html).expect("a JSON array");
    assert_eq!(events.len(), 55);
    assert!(actions(&events).iter().all(|action| *action == "api_key.create"));
    assert_eq!(events[0], owner.audit("?action=api_key.create&limit=1").await[0], "the API's own shape");
    let theirs = Browser::of(&app, &globex).get("/app/audit.json").await;
    assert!(theirs.html.contains("globex secret agent") && !theirs.html.contains("acme"), "{}", theirs.html);

    // Members read the log, as they may through the API.
    assert_ok(&Browser::of(&app, &member).get("/app/audit").await, "a member reads the log");
}

/// The value of the input with `id`.
fn input_value(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    let start = rest.find("value=\"")? + 7;
    let end = rest[start..].find('"')?;
    Some(unescape(&rest[start..start + end]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_invites_a_person_who_sets_a_password_and_signs_in() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let admin = app.with_user("acme", "admin@acme.example", Role::Admin).await;
    let browser = Browser::of(&app, &admin);

    let members = browser.get("/app/members").await;
    assert_ok(&members, "the members page");
    for id in ["add-member", "member-email", "member-role", "members-table"] {
        assert!(members.html.contains(&format!("id=\"{id}\"")), "no #{id}: {}", members.html);
    }
    assert!(members.html.contains("owner@acme.example") && members.html.contains("admin@acme.example"));

    let added =
        submit(&browser, "/app/members", "/app/members", &[("email", "new@acme.example"), ("role", "member")]).await;
    assert_ok(&added, "adding a new person shows their link");
    let link = input_value(&added.html, "invite-link").unwrap_or_else(|| panic!("no invitation link: {}", added.html));
    let base = app.client.url("");
    assert!(link.starts_with(&format!("{base}/app/password?token=")), "{link}");
    assert!(added.html.contains("data-copy=\"invite-link\""));
    let again = browser.get("/app/members").await;
    assert!(!again.html.contains("invite-link") && !again.html.contains(&link), "the link is shown once");
    assert!(again.html.contains("new@acme.example") && again.html.contains("not set yet"), "{}", again.html);
    let event = &owner.audit("?action=member.add&limit=1").await[0];
    assert_eq!(
        (&event["actor"]["name"], &event["target"]["label"]),
        (&json!("admin@acme.example"), &json!("new@acme.example"))
    );

    // The invitation works: set a password, then sign in with it.
    let path = link.strip_prefix(&base).expect("a link to this server");
    let anonymous = Browser::anonymous(&app);
    assert_ok(&anonymous.get(path).await, "the password page");
    let token = path.split("token=").nth(1).expect("a token");
    let password = "a new password for new";
    let set =
        anonymous.post_raw("/app/password", &[("token", token), ("password", password), ("confirm", password)]).await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.html);
    assert_eq!(set.location(), Some("/app/login?notice=password_set"));
    let (status, body) = app
        .client
        .post("/v1/auth/login", Cred::None, Some(&json!({ "email": "new@acme.example", "password": password })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!browser.get("/app/members").await.html.contains("not set yet"));
    let reused =
        anonymous.post_raw("/app/password", &[("token", token), ("password", password), ("confirm", password)]).await;
    assert_eq!(reused.status, StatusCode::NOT_FOUND, "a link works once");

    // Someone with an account already is added without a link.
    app.with_owner("globex").await;
    let existing =
        submit(&browser, "/app/members", "/app/members", &[("email", "owner@globex.example"), ("role", "admin")]).await;
    assert_eq!(existing.status, StatusCode::SEE_OTHER, "{}", existing.html);
    assert_eq!(existing.location(), Some("/app/members?notice=added"));
    let twice =
        submit(&browser, "/app/members", "/app/members", &[("email", "owner@globex.example"), ("role", "admin")]).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.html);
    assert!(
        twice.html.contains("role=\"alert\"") && twice.html.contains("value=\"owner@globex.example\""),
        "{}",
        twice.html
    );
    let invalid = submit(&browser, "/app/members", "/app/members", &[("email", SCRIPT), ("role", "member")]).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert!(invalid.html.contains(ESCAPED) && !invalid.html.contains(SCRIPT), "{}", invalid.html);
}

/// The user id in the role form of `email`'s row.
fn member_id(html: &str, email: &str) -> String {
    let row = html.find(&format!("Role of {email}")).unwrap_or_else(|| panic!("no role form for {email}: {html}"));
    let start = html[..row].rfind("/app/members/").expect("the form's action") + "/app/members/".len();
    html[start..start + 36].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_changed_and_members_removed_by_the_rules() {
    let app = TestApp::spawn().await;
    let owner = app.with_owner("acme").await;
    let admin = app.with_user("acme", "admin@acme.example", Role::Admin).await;
    let member = app.with_user("acme", "member@acme.example", Role::Member).await;
    let globex = app.with_owner("globex").await;
    let as_owner = Browser::of(&app, &owner);
    let as_admin = Browser::of(&app, &admin);
    let as_member = Browser::of(&app, &member);
    let role_of = |user: &TestUser| format!("/app/members/{}/role", user.user_id);
    let remove = |user: &TestUser| format!("/app/members/{}/remove", user.user_id);

    // The last owner can be neither demoted nor removed: the store's words, with 409.
    let demoted = submit(&as_owner, "/app/members", &role_of(&owner), &[("role", "admin")]).await;
    assert_eq!(demoted.status, StatusCode::CONFLICT, "{}", demoted.html);
    assert!(demoted.html.contains("last owner"), "{}", demoted.html);
    let confirm = as_owner.get(&remove(&owner)).await;
    assert_ok(&confirm, "the confirmation page");
    assert!(confirm.html.contains("Remove owner@acme.example?"), "{}", confirm.html);
    let removed = submit(&as_owner, "/app/members", &remove(&owner), &[]).await;
    assert_eq!(removed.status, StatusCode::CONFLICT, "{}", removed.html);
    assert!(removed.html.contains("last owner"), "{}", removed.html);

    // A member only looks; an admin leaves owners alone and makes none.
    let page = as_member.get("/app/members").await;
    assert_ok(&page, "a member sees the members");
    assert!(!page.html.contains("id=\"add-member\"") && !page.html.contains("Change role"), "{}", page.html);
    let refused =
        submit(&as_member, "/app/members", "/app/members", &[("email", "x@acme.example"), ("role", "member")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert_eq!(
        submit(&as_member, "/app/members", &role_of(&admin), &[("role", "member")]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(as_member.get(&remove(&admin)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        submit(&as_admin, "/app/members", &role_of(&owner), &[("role", "member")]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        submit(&as_admin, "/app/members", &role_of(&member), &[("role", "owner")]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(submit(&as_admin, "/app/members", &remove(&owner), &[]).await.status, StatusCode::FORBIDDEN);
    let make_owner = [("email", "boss@acme.example"), ("role", "owner")];
    assert_eq!(submit(&as_admin, "/app/members", "/app/members", &make_owner).await.status, StatusCode::FORBIDDEN);

    // Without the form's token nothing happens.
    let forged = as_owner.post_raw(&role_of(&member), &[("role", "owner")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let forged = as_owner.post_raw("/app/members", &[("email", "x@acme.example"), ("role", "owner")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let listed = as_owner.get("/app/members").await.html;
    assert!(!listed.contains("x@acme.example") && !listed.contains("globex"), "{listed}");
    assert_eq!(member_id(&listed, "member@acme.example"), member.user_id);

    // Another tenant's people are not found here.
    assert_eq!(
        submit(&as_owner, "/app/members", &role_of(&globex), &[("role", "member")]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(as_owner.get(&remove(&globex)).await.status, StatusCode::NOT_FOUND);

    // An admin promotes the member; the owner removes them after confirming; both audited.
    let promoted = submit(&as_admin, "/app/members", &role_of(&member), &[("role", "admin")]).await;
    assert_eq!(promoted.status, StatusCode::SEE_OTHER, "{}", promoted.html);
    assert_eq!(promoted.location(), Some("/app/members?notice=role_changed"));
    assert!(as_admin.get("/app/members?notice=role_changed").await.html.contains("The role was changed."));
    let confirm = as_owner.get(&remove(&member)).await;
    assert!(confirm.html.contains("member@acme.example") && confirm.html.contains("(admin)"), "{}", confirm.html);
    let gone = submit(&as_owner, &remove(&member), &remove(&member), &[]).await;
    assert_eq!(gone.location(), Some("/app/members?notice=removed"), "{}", gone.html);
    assert!(!as_owner.get("/app/members").await.html.contains("member@acme.example"));
    let events = owner.audit("").await;
    let change = events.iter().find(|e| e["action"] == "member.role_change").expect("a member.role_change row");
    assert_eq!(
        (&change["actor"]["name"], &change["target"]["label"]),
        (&json!("admin@acme.example"), &json!("member@acme.example"))
    );
    let removal = events.iter().find(|e| e["action"] == "member.remove").expect("a member.remove row");
    assert_eq!(removal["actor"]["name"], "owner@acme.example");
    assert_eq!(as_member.get("/app/members").await.status, StatusCode::SEE_OTHER, "their session here ended");

    // New password links: for someone of this tenant only, never for an owner by an admin.
    let link = submit(&as_admin, "/app/members", &format!("/app/members/{}/password-link", admin.user_id), &[]).await;
    assert_ok(&link, "a new password link");
    assert!(
        input_value(&link.html, "invite-link").is_some_and(|l| l.contains("/app/password?token=")),
        "{}",
        link.html
    );
    let for_owner = format!("/app/members/{}/password-link", owner.user_id);
    assert_eq!(submit(&as_admin, "/app/members", &for_owner, &[]).await.status, StatusCode::FORBIDDEN);
    submit(&as_owner, "/app/members", "/app/members", &[("email", "owner@globex.example"), ("role", "member")]).await;
    let elsewhere = format!("/app/members/{}/password-link", globex.user_id);
    let refused = submit(&as_owner, "/app/members", &elsewhere, &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert!(refused.html.contains("also belongs to other tenants"), "{}", refused.html);
}
