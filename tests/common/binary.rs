//! Running the `beb` binary: `beb(&["run", "s.beb", "--seed", "1"]).current_dir(dir).run()`.
//!
//! Every run gets plain output (`NO_COLOR=1`, no `CLICOLOR_FORCE` or `FORCE_COLOR`) and, unless
//! `stdin` gives it some, no input.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A `beb` command line being put together.
pub struct Beb {
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    runs_dir: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
}

/// What a finished `beb` printed, and its exit status (`None` when a signal ended it).
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

/// `beb ARGS`, to be configured and then run.
pub fn beb<S: AsRef<OsStr>>(args: &[S]) -> Beb {
    Beb {
        args: args.iter().map(|a| a.as_ref().to_os_string()).collect(),
        dir: None,
        stdin: None,
        runs_dir: None,
        envs: Vec::new(),
    }
}

/// `beb ARGS` run in the scratch folder `dir`, run folders without `--out` going to `dir/runs`.
pub fn beb_in<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Beb {
    beb(args).current_dir(dir).runs_dir(dir.join("runs"))
}

impl Beb {
    /// One more argument (a path, say).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Beb {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// More arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: &[S]) -> Beb {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// The folder it runs in (else the test's own).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Beb {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Text piped into its standard input.
    pub fn stdin(mut self, input: impl AsRef<[u8]>) -> Beb {
        self.stdin = Some(input.as_ref().to_vec());
        self
    }

    /// An environment variable for it (e.g. `HF_HOME`).
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Beb {
        self.envs
            .push((name.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Where runs without `--out` put their run folders (`BEB_RUNS_DIR`).
    pub fn runs_dir(mut self, dir: impl AsRef<Path>) -> Beb {
        self.runs_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_beb"));
        // Scripts name shared files as $BEB_SHARED/...; the tests run them from scratch
        // folders, so the default (../shared beside the repository) is passed as a full path.
        command
            .env("BEB_SHARED", super::shared_root())
            .args(&self.args)
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("FORCE_COLOR")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        if let Some(runs) = &self.runs_dir {
            command.env("BEB_RUNS_DIR", runs);
        }
        for (name, value) in &self.envs {
            command.env(name, value);
        }
        command
    }

    /// Start it and leave it running (to be stopped or waited for).
    pub fn spawn(self) -> Running {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start beb: {e}"));
        if let (Some(input), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            pipe.write_all(input).expect("write to beb's stdin");
        }
        Running(child)
    }

    /// Run it to the end.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }
}

/// A `beb` process still running.
pub struct Running(Child);

impl Running {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Send it SIGINT, as Ctrl-C does; whether the signal was sent.
    #[cfg(unix)]
    pub fn interrupt(&self) -> bool {
        Command::new("kill")
            .args(["-INT", &self.id().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stop it with SIGKILL (no chance to clean up) and wait for it.
    pub fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Wait for it to end; what it printed.
    pub fn wait(self) -> Output {
        let output = self.0.wait_with_output().expect("wait for beb");
        Output {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code(),
        }
    }
}
