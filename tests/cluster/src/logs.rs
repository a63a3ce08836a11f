//! Component logs: each process writes its own file in the cluster dir; errors quote the tail.

use std::path::Path;

/// The last `lines` lines of a log file (or a note saying it could not be read).
pub fn tail_file(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(log {} unreadable: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("lc-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.log");
        std::fs::write(&f, "a\nb\nc\nd\n").unwrap();
        assert_eq!(super::tail_file(&f, 2), "c\nd");
        assert_eq!(super::tail_file(&f, 10), "a\nb\nc\nd");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
