//! The benchmark floor's one console line: when its init began and when
//! it had loaded the modules (`CLOCK_BOOTTIME`, microseconds), so that
//! `kmatrix bench boot --phases` can set the bare boot's own kernel boot
//! beside a cold run's.

const PREFIX: &str = "kmatrix-floor: begun ";

/// The line the floor's init prints.
pub fn line(begun_us: u64, modules_us: u64) -> String {
    format!("{PREFIX}{begun_us} modules {modules_us}")
}

/// `(begun, modules)` from a floor's console, where it printed its line.
pub fn parse(console: &str) -> Option<(u64, u64)> {
    let rest = console
        .lines()
        .find_map(|l| l.trim().strip_prefix(PREFIX))?;
    let (begun, modules) = rest.split_once(" modules ")?;
    Some((begun.parse().ok()?, modules.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_read_back_among_the_kernels() {
        let console = format!(
            "[    0.1] something\n{}\r\nreboot: Power down\n",
            line(812_345, 880_001)
        );
        assert_eq!(parse(&console), Some((812_345, 880_001)));
        assert_eq!(parse("kmatrix-floor: begun x modules 1"), None);
        assert_eq!(parse("no line at all"), None);
    }
}
