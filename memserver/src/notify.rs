//! The systemd readiness protocol (sd_notify(3)), in a few lines: a
//! datagram to the socket `$NOTIFY_SOCKET` names (a path, or an abstract
//! name when it starts with `@`). Without the variable it does nothing.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<String>,
    last_status: String,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`.
    pub fn from_env() -> Notifier {
        Notifier::new(
            std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        )
    }

    pub fn new(socket: Option<String>) -> Notifier {
        Notifier {
            socket,
            last_status: String::new(),
        }
    }

    /// Sends `state` (newline-separated `KEY=value` assignments).
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some(path) = &self.socket else {
            return Ok(());
        };
        let sock = UnixDatagram::unbound()?;
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(path)?,
        };
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    }

    /// `READY=1`, with a status line.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={status}"))
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// `STATUS=...`, sent only when it changed.
    pub fn status(&mut self, status: &str) -> io::Result<()> {
        if self.socket.is_none() || status == self.last_status {
            return Ok(());
        }
        self.last_status = status.to_string();
        self.send(&format!("STATUS={status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_the_socket() {
        let dir = std::env::temp_dir().join(format!("memserver-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::new(Some(path.to_string_lossy().into_owned()));
        n.ready("listening on 10.77.1.2:7471").unwrap();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=listening on 10.77.1.2:7471");
        n.status("2 nodes").unwrap();
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=2 nodes");
        // Unchanged: not sent again.
        n.status("2 nodes").unwrap();
        rx.set_nonblocking(true).unwrap();
        assert!(rx.recv(&mut buf).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn abstract_sockets_work() {
        let name = format!("memserver-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        Notifier::new(Some(format!("@{name}"))).stopping().unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        assert!(Notifier::new(None).ready("x").is_ok());
    }
}
