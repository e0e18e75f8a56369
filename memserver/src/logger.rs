//! Log lines on stderr, through the `log` facade, with levels.
//!
//! On a terminal or a console each line reads `memserver: <message>`
//! (`memserver: warning: ...`, `memserver: error: ...` for those levels).
//! Under systemd, when stderr is the journal (`$JOURNAL_STREAM` names it),
//! each line instead starts with its syslog priority (`<4>` for a
//! warning...), which journald turns into the entry's priority, so
//! `journalctl -u memserver -p warning` shows warnings and errors.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Logger {
    journald: bool,
}

/// The line for one record, without the newline.
pub fn format_line(journald: bool, level: Level, msg: &str) -> String {
    if journald {
        let prio = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        format!("<{prio}>{msg}")
    } else {
        let tag = match level {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug => "debug: ",
            Level::Trace => "trace: ",
        };
        format!("memserver: {tag}{msg}")
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut line = format_line(self.journald, r.level(), &r.args().to_string());
        line.push('\n');
        // One write per line, so the metrics thread cannot interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Whether stderr is the journal stream systemd set up for us.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(m) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino())
}

/// Installs the logger (once; later calls only change the level).
pub fn init(level: LevelFilter) {
    let _ = log::set_boxed_logger(Box::new(Logger {
        journald: stderr_is_journal(),
    }));
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_keep_the_memserver_prefix() {
        assert_eq!(
            format_line(false, Level::Info, "listening on 10.77.1.2:7471"),
            "memserver: listening on 10.77.1.2:7471"
        );
        assert_eq!(
            format_line(
                false,
                Level::Warn,
                "refused connection from 10.77.1.1: node 1: wrong secret"
            ),
            "memserver: warning: refused connection from 10.77.1.1: node 1: wrong secret"
        );
        assert_eq!(format_line(false, Level::Error, "x"), "memserver: error: x");
    }

    #[test]
    fn journal_lines_carry_the_syslog_priority() {
        assert_eq!(format_line(true, Level::Error, "x"), "<3>x");
        assert_eq!(format_line(true, Level::Warn, "x"), "<4>x");
        assert_eq!(format_line(true, Level::Info, "x"), "<6>x");
        assert_eq!(format_line(true, Level::Debug, "x"), "<7>x");
    }
}
