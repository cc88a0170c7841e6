//! The host's side of `kmatrix shell`'s terminal: the keys read (Ctrl-]
//! leaves, everything else goes to the guest as it is, Ctrl-C included),
//! the terminal's size, and raw mode, restored when dropped.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use kmatrix_protocol::{Input, WindowSize};
use nix::sys::termios::{self, SetArg, Termios};

/// The key that leaves the session: Ctrl-], as telnet and QEMU's monitor
/// use it.
pub const ESCAPE: u8 = 0x1d;

/// What one read from the terminal means.
#[derive(Debug, PartialEq, Eq)]
pub struct Keys<'a> {
    /// The bytes for the guest: those before the escape key, if any.
    pub send: &'a [u8],
    /// Whether the user pressed the escape key (what follows it is
    /// dropped).
    pub leave: bool,
}

/// Reads `bytes` typed at the terminal.
pub fn keys(bytes: &[u8]) -> Keys<'_> {
    match bytes.iter().position(|&b| b == ESCAPE) {
        Some(at) => Keys {
            send: &bytes[..at],
            leave: true,
        },
        None => Keys {
            send: bytes,
            leave: false,
        },
    }
}

/// The message telling the guest the terminal is now `size` big; `None`
/// for a size the kernel reports for no terminal (zero rows or columns).
pub fn resize(size: &nix::pty::Winsize) -> Option<Input> {
    window_size(size).map(Input::Resize)
}

/// The cells of `size`, unless it is empty.
pub fn window_size(size: &nix::pty::Winsize) -> Option<WindowSize> {
    (size.ws_row > 0 && size.ws_col > 0).then_some(WindowSize {
        rows: size.ws_row,
        cols: size.ws_col,
    })
}

nix::ioctl_read_bad!(get_window_size, nix::libc::TIOCGWINSZ, nix::pty::Winsize);

/// The size of the terminal on `fd`.
pub fn size_of(fd: BorrowedFd<'_>) -> Option<nix::pty::Winsize> {
    let mut size = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize, which outlives the call.
    unsafe { get_window_size(fd.as_raw_fd(), &mut size) }.ok()?;
    Some(size)
}

/// The terminal on `fd` in raw mode (every key, Ctrl-C and Ctrl-Z too,
/// read as a byte, nothing echoed) until dropped, when its settings come
/// back.
pub struct RawMode<F: AsFd> {
    fd: F,
    saved: Termios,
}

impl<F: AsFd> RawMode<F> {
    /// Puts the terminal on `fd` in raw mode.
    pub fn enter(fd: F) -> nix::Result<Self> {
        let saved = termios::tcgetattr(fd.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(Self { fd, saved })
    }
}

impl<F: AsFd> Drop for RawMode<F> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_before_the_escape_are_sent_and_the_rest_dropped() {
        assert_eq!(
            keys(b"uname -r\r"),
            Keys {
                send: b"uname -r\r",
                leave: false
            }
        );
        assert_eq!(
            keys(b"ls\x1dexit\r"),
            Keys {
                send: b"ls",
                leave: true
            }
        );
        assert_eq!(
            keys(b"\x1d"),
            Keys {
                send: b"",
                leave: true
            }
        );
    }

    #[test]
    fn ctrl_c_and_other_controls_go_to_the_guest() {
        let typed = b"\x03\x04\x1a\x1b[A";
        assert_eq!(
            keys(typed),
            Keys {
                send: typed,
                leave: false
            }
        );
    }

    #[test]
    fn a_resize_carries_rows_and_columns_and_an_empty_size_none() {
        let size = |ws_row, ws_col| nix::pty::Winsize {
            ws_row,
            ws_col,
            ws_xpixel: 640,
            ws_ypixel: 480,
        };
        assert_eq!(
            resize(&size(40, 120)),
            Some(Input::Resize(WindowSize {
                rows: 40,
                cols: 120
            }))
        );
        assert_eq!(resize(&size(0, 120)), None);
        assert_eq!(resize(&size(40, 0)), None);
    }
}
