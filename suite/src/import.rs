//! `sockconform import`: take another platform's CI artifacts for review (being written).

pub fn main(_args: &[String]) -> i32 {
    eprintln!("error: `import` is not implemented yet");
    2
}
