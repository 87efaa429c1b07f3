//! `--pcap DIR`: the packets of each case as a standard pcap file, for `tcpdump -r` or Wireshark,
//! when the reduced wire of a snapshot is not enough to understand a surprise.
//!
//! One file per case, flat in DIR, named by the case id with the family separator doubled
//! (`close/orderly_idle` is `close__orderly_idle.pcap`), so the files sort by family and need no
//! folders. Each holds every segment the capture saw (the capture of the client's namespace in
//! the fault lab), headers and at most the start of the payload (`platforms::wire::SNAPLEN`).

use platforms::wire::{write_pcap, Frame};
use std::io;
use std::path::{Path, PathBuf};

/// The file name of a case (or of any run the caller names, e.g. an explorer finding).
pub fn file_name(case_id: &str) -> String {
    let safe: String = case_id
        .replace('/', "__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.pcap")
}

/// Write the packets of one run as `dir/<file_name(name)>`; returns the file written.
pub fn write(dir: &Path, name: &str, frames: &[Frame]) -> io::Result<PathBuf> {
    let path = dir.join(file_name(name));
    let mut out = io::BufWriter::new(std::fs::File::create(&path)?);
    write_pcap(&mut out, frames)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_by_case_id() {
        assert_eq!(file_name("close/orderly_idle"), "close__orderly_idle.pcap");
        assert_eq!(file_name("explore/seed 7: a"), "explore__seed_7__a.pcap");
    }
}
