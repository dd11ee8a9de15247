//! `podswitch-cni`: run by a container runtime with `CNI_*` variables and the network config on
//! stdin; prints the CNI result or error on stdout. All logic lives in the library.

use podswitch_cni::client::UnixControl;
use podswitch_cni::env::RawEnv;
use podswitch_cni::plugin;
use podswitch_cni::result::{code, CniError};
use podswitch_cni::version::CniVersion;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let env = RawEnv::from_process();
    let outcome = match read_stdin() {
        Ok(stdin) => plugin::run(&env, &stdin, &mut UnixControl),
        Err(err) => plugin::Outcome {
            stdout: CniError::new(code::IO_FAILURE, "cannot read the network config on stdin")
                .with_details(err.to_string())
                .to_json(CniVersion::LATEST),
            exit_code: 1,
        },
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(outcome.stdout.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::from(outcome.exit_code)
}

/// All of stdin; nothing when it is a terminal (someone typing `CNI_COMMAND=VERSION
/// podswitch-cni` by hand), where waiting for EOF would only look like a hang.
fn read_stdin() -> std::io::Result<Vec<u8>> {
    let mut stdin = std::io::stdin().lock();
    let mut buf = Vec::new();
    if !stdin.is_terminal() {
        stdin.read_to_end(&mut buf)?;
    }
    Ok(buf)
}
