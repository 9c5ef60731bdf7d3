//! Stdio upstreams as the operator defines them. A stdio upstream is a program the gateway runs on
//! its own host for any tenant that publishes it, so the operator names whole commands
//! ([`StdioCommand`]): the program's absolute path, the arguments it always gets, whether a
//! service may add more (no by default), and which environment names a service may set. Names
//! that choose what runs or what it loads (`PATH`, `LD_*`, `DYLD_*`, `NODE_OPTIONS`, `PYTHON*`, …)
//! are never accepted. Every process runs under `prlimit` with limits on memory, CPU time, open
//! files and processes ([`StdioLimits`]), with `PATH` fixed by the gateway.

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde::{Deserialize, Serialize};

/// One command services may run, as the operator wrote it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioCommand {
    /// What a service names as `upstream.command`.
    pub name: String,
    /// The program run: an absolute path.
    pub path: String,
    /// Arguments always passed first.
    #[serde(default)]
    pub args: Vec<String>,
    /// Whether a service may add arguments after those (`false` by default).
    #[serde(default)]
    pub extra_args: bool,
    /// Environment names a service may set.
    #[serde(default)]
    pub env: Vec<String>,
}

/// Resource limits of each stdio upstream process (applied with `prlimit`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdioLimits {
    /// Address space, MiB.
    pub memory_mib: u64,
    /// CPU time, seconds.
    pub cpu_secs: u64,
    /// Open files.
    pub open_files: u64,
    /// Processes of the gateway's user the child may count up to (not enforced for root).
    pub processes: u64,
    /// The `prlimit` program (util-linux).
    pub prlimit: String,
    /// Run every process as this `user:group` (or `user`, with the group of the same name)
    /// instead of the gateway's, with `setpriv` (util-linux): for a gateway running as root, say
    /// `nobody:nogroup`. Unset: the gateway's own.
    pub run_as: Option<String>,
    /// The `setpriv` program (util-linux).
    pub setpriv: String,
}

impl Default for StdioLimits {
    fn default() -> Self {
        Self {
            memory_mib: 2048,
            cpu_secs: 3600,
            open_files: 256,
            processes: 256,
            prlimit: "/usr/bin/prlimit".into(),
            run_as: None,
            setpriv: "/usr/bin/setpriv".into(),
        }
    }
}

/// Environment names no service may set, exactly or as a prefix: they choose the program, what it
/// loads or how its runtime behaves.
const FORBIDDEN_ENV: &[&str] = &["PATH", "HOME", "SHELL", "IFS", "ENV", "BASH_ENV", "NODE_OPTIONS", "NODE_PATH"];
const FORBIDDEN_ENV_PREFIXES: &[&str] =
    &["LD_", "DYLD_", "PYTHON", "PERL", "RUBY", "JAVA_", "_JAVA", "GCONV", "MALLOC_"];

/// The `PATH` every stdio process gets.
const FIXED_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn forbidden_env(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    FORBIDDEN_ENV.contains(&upper.as_str()) || FORBIDDEN_ENV_PREFIXES.iter().any(|prefix| upper.starts_with(prefix))
}

/// Why a service's stdio upstream is not allowed; the text says what to change.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LaunchRefusal {
    #[error(
        "{0:?} is not a command this server runs; an operator can allow one with [[stdio_commands]] (name, \
         absolute path, fixed args, allowed env names)"
    )]
    UnknownCommand(String),
    #[error(
        "the command {0:?} takes no arguments from services; remove upstream.args (an operator sets its arguments)"
    )]
    NoExtraArgs(String),
    #[error("upstream.env may not set {0:?}: it would choose what runs or how it loads")]
    ForbiddenEnv(String),
    #[error("upstream.env may not set {name:?}: the command {command:?} allows only {allowed:?}")]
    EnvNotAllowed { name: String, command: String, allowed: Vec<String> },
}

/// Finds `command` among the operator's and checks what a service adds to it.
pub fn check<'a>(
    commands: &'a [StdioCommand],
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Result<&'a StdioCommand, LaunchRefusal> {
    let allowed = commands
        .iter()
        .find(|entry| entry.name == command && entry.path.starts_with('/'))
        .ok_or_else(|| LaunchRefusal::UnknownCommand(command.to_owned()))?;
    if !args.is_empty() && !allowed.extra_args {
        return Err(LaunchRefusal::NoExtraArgs(command.to_owned()));
    }
    for name in env.keys() {
        if forbidden_env(name) {
            return Err(LaunchRefusal::ForbiddenEnv(name.clone()));
        }
        if !allowed.env.contains(name) {
            return Err(LaunchRefusal::EnvNotAllowed {
                name: name.clone(),
                command: command.to_owned(),
                allowed: allowed.env.clone(),
            });
        }
    }
    Ok(allowed)
}

/// The program and arguments that start `command` with `args` under `limits`.
pub fn command_line(command: &StdioCommand, args: &[String], limits: &StdioLimits) -> (OsString, Vec<OsString>) {
    let mut line: Vec<OsString> = vec![
        format!("--as={}", limits.memory_mib.saturating_mul(1024 * 1024)).into(),
        format!("--cpu={}", limits.cpu_secs).into(),
        format!("--nofile={}", limits.open_files).into(),
        format!("--nproc={}", limits.processes).into(),
        "--".into(),
    ];
    if let Some(run_as) = &limits.run_as {
        let (user, group) = run_as.split_once(':').unwrap_or((run_as, run_as));
        line.extend([
            limits.setpriv.clone().into(),
            format!("--reuid={user}").into(),
            format!("--regid={group}").into(),
            "--clear-groups".into(),
            "--".into(),
        ]);
    }
    line.push(command.path.clone().into());
    line.extend(command.args.iter().map(OsString::from));
    line.extend(args.iter().map(OsString::from));
    (limits.prlimit.clone().into(), line)
}

/// The environment a process starts with: the fixed `PATH` and the service's allowed names.
pub fn environment(env: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = vec![("PATH".to_owned(), FIXED_PATH.to_owned())];
    out.extend(env.iter().filter(|(name, _)| !forbidden_env(name)).map(|(k, v)| (k.clone(), v.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python() -> StdioCommand {
        StdioCommand {
            name: "weather".into(),
            path: "/usr/bin/python3".into(),
            args: vec!["/opt/weather.py".into()],
            extra_args: false,
            env: vec!["WEATHER_KEY".into()],
        }
    }

    #[test]
    fn services_add_only_what_the_operator_allowed() {
        let commands = [python()];
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        assert!(check(&commands, "weather", &[], &env(&[("WEATHER_KEY", "k")])).is_ok());
        assert_eq!(check(&commands, "python3", &[], &env(&[])), Err(LaunchRefusal::UnknownCommand("python3".into())));
        let args = ["-c".to_owned(), "import os".to_owned()];
        assert_eq!(check(&commands, "weather", &args, &env(&[])), Err(LaunchRefusal::NoExtraArgs("weather".into())));
        for name in
            ["PATH", "path", "LD_PRELOAD", "DYLD_INSERT_LIBRARIES", "NODE_OPTIONS", "PYTHONPATH", "PYTHONSTARTUP"]
        {
            let refused = check(&commands, "weather", &[], &env(&[(name, "x")]));
            assert_eq!(refused, Err(LaunchRefusal::ForbiddenEnv(name.into())), "{name}");
        }
        assert!(matches!(
            check(&commands, "weather", &[], &env(&[("OTHER", "x")])),
            Err(LaunchRefusal::EnvNotAllowed { .. })
        ));
        let relative = StdioCommand { path: "python3".into(), ..python() };
        assert!(check(&[relative], "weather", &[], &env(&[])).is_err(), "only absolute paths run");
    }

    #[test]
    fn every_process_runs_under_its_limits_with_a_fixed_path() {
        let (program, args) = command_line(&python(), &[], &StdioLimits::default());
        assert_eq!(program, "/usr/bin/prlimit");
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(args[..4], ["--as=2147483648", "--cpu=3600", "--nofile=256", "--nproc=256"]);
        assert_eq!(args[4..], ["--", "/usr/bin/python3", "/opt/weather.py"]);
        let limits = StdioLimits { run_as: Some("nobody:nogroup".into()), ..StdioLimits::default() };
        let args: Vec<String> =
            command_line(&python(), &[], &limits).1.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            args[4..],
            [
                "--",
                "/usr/bin/setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
                "/usr/bin/python3",
                "/opt/weather.py"
            ]
        );
        let env: BTreeMap<String, String> =
            [("PATH".to_owned(), "/tmp/evil".to_owned()), ("WEATHER_KEY".to_owned(), "k".to_owned())].into();
        assert_eq!(
            environment(&env),
            [("PATH".to_owned(), FIXED_PATH.to_owned()), ("WEATHER_KEY".to_owned(), "k".to_owned())]
        );
    }
}
