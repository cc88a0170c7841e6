//! Writes as many bytes to stdout as its first argument says, in uneven
//! pieces, then their count to stderr.

use std::io::Write;

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let mut written = 0;
    let mut piece = 1;
    while written < total {
        let n = piece.min(total - written);
        let chunk: Vec<u8> = (written..written + n)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        out.write_all(&chunk).unwrap();
        written += n;
        piece = piece * 7 % 9973 + 1;
    }
    out.flush().unwrap();
    eprintln!("chatter: wrote {written} bytes");
}
