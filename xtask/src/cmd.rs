//! Running child processes, and the error type of the xtask.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

/// A failure: a message for the user and the exit code to end with.
#[derive(Debug)]
pub(crate) struct Error {
    message: String,
    code: u8,
}

impl Error {
    /// A failure that ends the xtask with exit code 1.
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: 1 }
    }

    /// A child process that exited with `status`; the xtask ends with the same code.
    pub(crate) fn failed(what: &str, status: ExitStatus) -> Self {
        Self {
            message: format!("{what} failed ({})", describe(status)),
            code: exit_code_of(status),
        }
    }

    /// The exit code the xtask ends with.
    pub(crate) fn code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result type of the xtask.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The workspace root (the parent of `xtask/`).
pub(crate) fn root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// `cargo` (the one running us, when known), in the workspace root.
pub(crate) fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(root());
    cmd
}

/// `program arg arg ...`, for messages.
pub(crate) fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let mut out = program;
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&shell_word(arg));
    }
    out
}

fn shell_word(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain =
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c));
    if plain { s.into_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// Runs `cmd` to completion and returns its status; an error only if it could not start.
pub(crate) fn status(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.status().map_err(|e| Error::msg(format!("could not run `{}`: {e}", display(cmd))))
}

/// Runs `cmd`; an error unless it exits with status 0.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let st = status(cmd)?;
    if st.success() { Ok(()) } else { Err(Error::failed(&format!("`{}`", display(cmd)), st)) }
}

/// Runs `cmd` with stdin closed and captures its stdout (stderr is passed through).
pub(crate) fn capture(cmd: &mut Command) -> Result<(ExitStatus, String)> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::msg(format!("could not run `{}`: {e}", display(cmd))))?;
    Ok((out.status, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs `cmd` with all output discarded; whether it exited with status 0.
pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The executable `name` on `PATH`, if any.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file someone may execute.
pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Whether we run as root (the effective uid owns `/proc/self`).
pub(crate) fn is_root() -> bool {
    match std::fs::metadata("/proc/self") {
        Ok(m) => m.uid() == 0,
        Err(_) => {
            let mut id = Command::new("id");
            id.arg("-u");
            capture(&mut id).is_ok_and(|(st, out)| st.success() && out.trim() == "0")
        }
    }
}

/// "exit status 3" / "killed by signal 9".
pub(crate) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "unknown status".to_owned(),
    }
}

/// The exit code that passes `status` on: its own code, 128 + signal, or 1.
pub(crate) fn exit_code_of(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(0), _) => 0,
        (Some(code), _) => u8::try_from(code).ok().filter(|&c| c != 0).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        (None, None) => 1,
    }
}

/// [`exit_code_of`] as an [`ExitCode`].
pub(crate) fn exit_code(status: ExitStatus) -> ExitCode {
    ExitCode::from(exit_code_of(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_the_shell_would_split() {
        let mut cmd = Command::new("/usr/bin/psql");
        cmd.args(["-tAc", "SELECT 1", "-c", "a='b'", ""]);
        assert_eq!(display(&cmd), r#"psql -tAc 'SELECT 1' -c 'a='\''b'\''' ''"#);
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code_of(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code_of(ExitStatus::from_raw(101 << 8)), 101);
        // Killed by SIGINT.
        assert_eq!(exit_code_of(ExitStatus::from_raw(2)), 130);
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(root().join("Cargo.toml").is_file());
        assert!(root().join("xtask").is_dir());
    }
}
