//! `loadshift token create`: writes a new bearer token for the control plane's `token_file` (and
//! the proxies' `control.token_file`, `loadshift ctl --token-file`): 32 random bytes from the
//! operating system's generator (through `rand`'s thread generator, reseeded from it), hex
//! encoded, one line, mode 0600. An existing file is kept unless `--force`.

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Subcommand};
use rand::RngCore;

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    cmd: TokenCmd,
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Write a new random token (64 hex digits, one line, readable by the owner only).
    Create {
        /// Where to write it (the path `token_file` names in the configs).
        #[arg(long, default_value = crate::cmd::DEFAULT_TOKEN_FILE)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

pub fn main(args: TokenArgs) -> ExitCode {
    match args.cmd {
        TokenCmd::Create { out, force } => match create(&out, force) {
            Ok(()) => {
                println!("wrote a new token to {}", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadshift token create: {}: {e}", out.display());
                ExitCode::from(crate::EXIT_CONFIG)
            }
        },
    }
}

/// A new token: 32 random bytes as 64 lowercase hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn create(path: &Path, force: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(e.kind(), "exists; pass --force to replace it")
        } else {
            e
        }
    })?;
    writeln!(f, "{}", new_token())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn an_existing_file_is_kept_without_force() {
        let dir = std::env::temp_dir().join(format!("loadshift-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("token");
        let _ = std::fs::remove_file(&p);
        create(&p, false).unwrap();
        let first = std::fs::read_to_string(&p).unwrap();
        assert_eq!(first.trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let e = create(&p, false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), first);
        create(&p, true).unwrap();
        assert_ne!(std::fs::read_to_string(&p).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
