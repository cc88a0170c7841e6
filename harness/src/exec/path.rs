//! The program a command line names, found as a shell finds it: on the
//! host's PATH ([`crate::tools::which`]) for a name without a `/`.

use std::path::PathBuf;

use super::ExecError;

/// The program `name` names, as a shell finds it: a name without a `/`
/// is looked up on the PATH, anything else is a path; absolute.
pub fn find_program(name: &str) -> Result<PathBuf, ExecError> {
    let found = if name.contains('/') {
        PathBuf::from(name)
    } else {
        crate::tools::which(name).ok_or_else(|| ExecError::NotFound {
            program: name.to_owned(),
            path: std::env::var_os("PATH"),
        })?
    };
    std::path::absolute(&found).map_err(|source| ExecError::Read {
        path: found,
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::super::prepare;

    #[test]
    fn a_program_without_a_slash_is_found_on_the_path() {
        let argv = ["sh".to_owned(), "-c".to_owned(), "uname -r".to_owned()];
        let prepared = prepare(&argv, &[], &[], false, 512).unwrap();
        let sh = Path::new(OsStr::from_bytes(&prepared.plan.argv[0]));
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert!(prepared.files.contains(&sh.to_path_buf()));
        assert!(
            prepared.files.iter().any(|f| f.ends_with("uname")),
            "{:?}",
            prepared.files
        );
        let err = prepare(&["no-such-program-anywhere".into()], &[], &[], false, 512).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("no-such-program-anywhere") && text.contains("PATH"),
            "{text}"
        );
    }
}
