//! Rule sets shared by the criterion benches: `n` rules of one origin each, every tenth a
//! subdomain glob, indices zero-padded so that every coordinate's origins have one length
//! (lookup cost is per byte).

pub fn rules_text(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let origin = if i % 10 == 9 {
            format!("https://*.tenant{i:05}.example.net")
        } else {
            format!("https://app{i:05}.customer{:02}.example.com", i % 97)
        };
        text.push_str(&format!(
            "[[rule]]\nname = \"r{i}\"\norigins = [\"{origin}\"]\nmethods = [\"PUT\", \"DELETE\"]\nheaders = [\"content-type\", \"x-api-key\"]\n"
        ));
    }
    text
}
