//! A test that always fails, so that a runner reporting it as passed is
//! caught.

#[test]
fn always_fails() {
    panic!("this test always fails");
}
