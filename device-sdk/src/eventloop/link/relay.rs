//! The in-process relay between rumqttc and the SDK's own stream: a Unix socket in a
//! private directory, for exactly one connection.
//!
//! The directory is new for every attempt (mode 0700, so only this user can reach the
//! socket), and removed with the socket as soon as the one connection is accepted, or
//! when the attempt ends before that. The listener is closed after that first accept:
//! nothing else can connect. On Linux the accepted peer must be this process.

use std::{
    io,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::UnixListener,
    task::JoinHandle,
};

use super::socket::Upstream;

/// How long [`Relay::upstream_error`] waits for a relay that is ending.
const END_GRACE: Duration = Duration::from_millis(50);

/// Attempts of this process, to name their directories.
static ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// The private directory of one attempt, removed (with its socket) on drop.
struct PrivateDir {
    dir: PathBuf,
    socket: PathBuf,
}

impl PrivateDir {
    /// A new directory under the system's temporary directory, mode 0700. Creating
    /// fails rather than reuse anything that exists.
    fn create() -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..4 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!("mir-sdk-{}-{n}-{nanos:x}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let socket = dir.join("mqtt.sock");
                    return Ok(Self { dir, socket });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free directory name")))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // Nothing to do about a failure: the directory is private and empty at worst.
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A listener on the Unix socket of a new private directory.
pub(crate) struct Listener {
    listener: UnixListener,
    dir: PrivateDir,
    path: String,
}

impl Listener {
    pub fn bind() -> io::Result<Self> {
        let dir = PrivateDir::create()?;
        let path = dir
            .socket
            .to_str()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not UTF-8", dir.socket.display()),
                )
            })?
            .to_owned();
        let listener = UnixListener::bind(&dir.socket)?;
        Ok(Self {
            listener,
            dir,
            path,
        })
    }

    /// The socket's path, for rumqttc.
    pub fn path_str(&self) -> &str {
        &self.path
    }

    #[cfg(test)]
    pub fn dir(&self) -> &std::path::Path {
        &self.dir.dir
    }
}

/// The task that serves one connection; aborted when dropped.
pub(crate) struct Relay {
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Relay {
    /// Serves `listener`'s first connection with `upstream`.
    pub fn start(listener: Listener, upstream: Upstream) -> Self {
        let task = match upstream {
            Upstream::Plain(stream) => tokio::spawn(serve(listener, stream)),
            Upstream::Tls(stream) => tokio::spawn(serve(listener, stream)),
        };
        Self { task: Some(task) }
    }

    /// The error the relay ended with, if it ended (or ends within [`END_GRACE`]) with
    /// one.
    pub async fn upstream_error(&mut self) -> Option<io::Error> {
        let task = self.task.as_mut()?;
        let ended = tokio::time::timeout(END_GRACE, task).await.ok()?;
        self.task = None;
        match ended {
            Ok(Err(e)) => Some(e),
            _ => None,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Accepts one connection, closes the listener and removes its directory, then copies
/// both ways until either side ends; both are closed then.
async fn serve<S>(listener: Listener, mut upstream: S) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Listener { listener, dir, .. } = listener;
    let accepted = listener.accept().await;
    drop(listener);
    drop(dir);
    let (mut local, _) = accepted?;
    check_peer(&local)?;
    tokio::io::copy_bidirectional(&mut local, &mut upstream).await?;
    Ok(())
}

/// On Linux and Android: the peer is this process (rumqttc).
fn check_peer(local: &tokio::net::UnixStream) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let cred = local.peer_cred()?;
        let ours = i32::try_from(std::process::id()).ok();
        if cred.pid() != ours {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the relay's peer is process {:?}, not this one", cred.pid()),
            ));
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = local;
    Ok(())
}
