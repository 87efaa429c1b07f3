//! `sockconform diff`: the cross-platform matrix (being written).

pub fn main(_args: &[String]) -> i32 {
    eprintln!("error: `diff` is not implemented yet");
    2
}
