//! File descriptors and the listen backlog: the open-file limit raised at
//! start, the connection cap fitted under it, and the listener bound with
//! a backlog of the operator's choosing.
//!
//! A connection holds one descriptor, and a second while it writes or reads
//! a body file. Few connections hold a file at once (a blocked consumer or
//! a small push holds none), so a quarter of the descriptors past the
//! reserved ones is kept for body files and the rest caps the connections:
//! a cap above what the limit allows would run the server out of
//! descriptors before it ran out of connections, and requests would fail
//! (`503`) where the cap should have made clients wait instead.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Descriptors kept for everything but connections and their body files:
/// the listener, the runtime's, the log's segments, standard streams.
const RESERVED: u64 = 64;

/// The backlog when the system's maximum cannot be read (Linux's default
/// `somaxconn` since 5.4).
const FALLBACK_BACKLOG: u32 = 4096;

/// Raises the soft limit on open files to the hard one; the soft limit
/// now in force. The usual soft limit of 1024 is far below the default
/// connection cap.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        let current = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Ok(current);
        }
    }
    Ok(limit.rlim_cur)
}

/// The soft limit on open files, if it can be read.
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 };
    read.then_some(limit.rlim_cur)
}

/// `max_connections`, lowered (with a warning) to what `open_files`
/// descriptors allow: one a connection, besides the reserved ones and a
/// quarter of the rest kept for body files.
pub(super) fn connection_cap(max_connections: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else {
        return max_connections;
    };
    let usable = open_files.saturating_sub(RESERVED);
    let allowed = usable - usable / 4;
    let allowed = usize::try_from(allowed).unwrap_or(usize::MAX).max(1);
    if allowed < max_connections {
        tracing::warn!(
            open_files,
            max_connections,
            serving = allowed,
            "the open-file limit allows fewer connections than --max-connections (one descriptor a connection, a quarter kept for body files); serving fewer: raise the limit (ulimit -Hn, LimitNOFILE=) to serve more"
        );
        return allowed;
    }
    max_connections
}

/// The connection cap under the current open-file limit.
pub(super) fn current_connection_cap(max_connections: usize) -> usize {
    connection_cap(max_connections, open_file_limit())
}

/// The system's largest listen backlog: Linux's `somaxconn`, which caps
/// whatever `listen` asks for.
pub fn system_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(FALLBACK_BACKLOG)
}

/// A listener on `addr` whose kernel queue holds up to `backlog` clients
/// not yet accepted (clients wait there while the server is at its cap).
pub(super) fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restart may bind while connections of
    // the previous process linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Whether `e` is running out of descriptors (the process's or the
/// system's), looking through the errors that wrap it.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        crate::backend::error::os_error_code(e),
        Some(libc::EMFILE | libc::ENFILE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_a_reserve_and_a_quarter_for_body_files() {
        assert_eq!(connection_cap(10_000, None), 10_000);
        assert_eq!(connection_cap(10_000, Some(1 << 20)), 10_000);
        assert_eq!(connection_cap(10_000, Some(1024)), 720);
        assert_eq!(connection_cap(11_000, Some(20_000)), 11_000);
        assert_eq!(connection_cap(20_000, Some(20_000)), 14_952);
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(100, Some(10)), 1, "never none");
    }

    #[tokio::test]
    async fn the_listener_takes_the_backlog_and_the_system_has_one() {
        assert!(system_backlog() > 0);
        let listener = bind("127.0.0.1:0".parse().unwrap(), 8).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr);
        let (client, accepted) = tokio::join!(client, listener.accept());
        assert!(client.is_ok() && accepted.is_ok());
    }
}
