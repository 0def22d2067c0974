//! Reads the runbooks in `docs/runbooks/` and runs their checked blocks with the `tidings`
//! binary. A block opens with ```` ```console check=<scenario>/<step> ````; in it a line
//! `$ tidings ...` is a command and the lines after it are what its output must contain,
//! in order (white space collapsed, `...` matching anything; a line starting `error:` means
//! the command must fail). `<name>` is filled from [`Vars`].
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod seed;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

/// The folder of the runbooks.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/runbooks")
}

/// One command of a checked block and the output it must show.
#[derive(Debug, Clone)]
pub struct Command {
    pub line: usize,
    pub text: String,
    pub expect: Vec<String>,
}

/// A checked block.
#[derive(Debug, Clone)]
pub struct Block {
    pub scenario: String,
    pub step: String,
    pub line: usize,
    pub commands: Vec<Command>,
}

/// The values of a runbook's `<placeholders>` and the transport URL (`TIDINGS_URL`).
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub url: String,
    pub values: BTreeMap<String, String>,
}

impl Vars {
    pub fn new(url: impl Into<String>) -> Self {
        Vars {
            url: url.into(),
            values: BTreeMap::new(),
        }
    }

    pub fn set(mut self, name: &str, value: impl ToString) -> Self {
        self.values.insert(name.to_string(), value.to_string());
        self
    }

    /// `text` with every `<name>` replaced; panics on a name without a value.
    pub fn fill(&self, text: &str, at: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('<') {
            let Some(len) = rest[start..].find('>') else {
                break;
            };
            let name = &rest[start + 1..start + len];
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            out.push_str(&rest[..start]);
            if is_name {
                let value = self.values.get(name).unwrap_or_else(|| {
                    panic!(
                        "{at}: the runbook uses <{name}>, which the test's incident does not set"
                    )
                });
                out.push_str(value);
            } else {
                out.push_str(&rest[start..=start + len]);
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// The checked blocks of `markdown`.
pub fn parse(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        let n = i + 1;
        if let Some(block) = current.as_mut() {
            if line.trim_start().starts_with("```") {
                blocks.push(current.take().expect("open block"));
            } else if let Some(cmd) = line.strip_prefix("$ ") {
                block.commands.push(Command {
                    line: n,
                    text: cmd.trim().to_string(),
                    expect: Vec::new(),
                });
            } else if !line.trim().is_empty() {
                let cmd = block
                    .commands
                    .last_mut()
                    .unwrap_or_else(|| panic!("line {n}: output before any `$ ` command"));
                cmd.expect.push(line.to_string());
            }
            continue;
        }
        let Some(info) = line.trim_start().strip_prefix("```console") else {
            continue;
        };
        let Some(check) = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("check="))
        else {
            continue;
        };
        let (scenario, step) = check
            .split_once('/')
            .unwrap_or_else(|| panic!("line {n}: check=<scenario>/<step>, got check={check}"));
        current = Some(Block {
            scenario: scenario.to_string(),
            step: step.to_string(),
            line: n,
            commands: Vec::new(),
        });
    }
    assert!(current.is_none(), "a checked block is not closed");
    blocks
}

/// Splits a command line into words: white space separates, '...' and "..." quote.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unclosed quote in `{line}`");
    if in_word {
        out.push(word);
    }
    out
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether output line `line` matches expected line `pattern` (white space collapsed, `...`
/// matching any text).
pub fn matches(pattern: &str, line: &str) -> bool {
    let line = collapse(line);
    let pattern = collapse(pattern);
    let parts: Vec<&str> = pattern.split("...").map(str::trim).collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return line == first;
    }
    if !line.starts_with(first) {
        return false;
    }
    let mut at = first.len();
    for part in &parts[1..parts.len() - 1] {
        match line[at..].find(part) {
            Some(i) => at += i + part.len(),
            None => return false,
        }
    }
    line.len() >= at + last.len() && line[at..].ends_with(last)
}

/// A runbook and which of its blocks have run.
#[derive(Debug)]
pub struct Runbook {
    pub file: String,
    pub blocks: Vec<Block>,
    ran: Vec<bool>,
}

impl Runbook {
    /// Loads `docs/runbooks/<file>`; it must have checked blocks of one scenario.
    pub fn load(file: &str) -> Self {
        let text = std::fs::read_to_string(dir().join(file))
            .unwrap_or_else(|e| panic!("reading docs/runbooks/{file}: {e}"));
        let blocks = parse(&text);
        assert!(
            !blocks.is_empty(),
            "{file} has no ```console check=... block"
        );
        let scenario = &blocks[0].scenario;
        assert!(
            blocks.iter().all(|b| &b.scenario == scenario),
            "{file}: every checked block names the same scenario"
        );
        Runbook {
            file: file.to_string(),
            ran: vec![false; blocks.len()],
            blocks,
        }
    }

    /// Runs every block of `step`, in the runbook's order, asserting their outputs.
    pub fn run(&mut self, step: &str, vars: &Vars) {
        let mut any = false;
        for (i, block) in self.blocks.iter().enumerate() {
            if block.step != step {
                continue;
            }
            any = true;
            self.ran[i] = true;
            for cmd in &block.commands {
                run_command(&self.file, cmd, vars);
            }
        }
        assert!(any, "{}: no block check=…/{step}", self.file);
    }

    /// Asserts that every checked block ran.
    pub fn finish(self) {
        for (block, ran) in self.blocks.iter().zip(&self.ran) {
            assert!(
                ran,
                "{}:{}: block check={}/{} was never run by the test",
                self.file, block.line, block.scenario, block.step
            );
        }
    }
}

fn run_command(file: &str, cmd: &Command, vars: &Vars) {
    let at = format!("docs/runbooks/{file}:{}", cmd.line);
    let argv = words(&vars.fill(&cmd.text, &at));
    assert_eq!(
        argv.first().map(String::as_str),
        Some("tidings"),
        "{at}: a checked command runs `tidings`"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(&argv[1..])
        .env("TIDINGS_URL", &vars.url)
        .env_remove("TIDINGS_SAGA_DB")
        .env_remove("TIDINGS_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{at}: running the tidings binary: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ {}\n{text}", argv.join(" "));
    let expect: Vec<String> = cmd.expect.iter().map(|e| vars.fill(e, &at)).collect();
    let must_fail = expect.iter().any(|e| e.trim_start().starts_with("error:"));
    assert_eq!(
        out.status.success(),
        !must_fail,
        "{at}: `{}` should {}; it printed:\n{text}",
        cmd.text,
        if must_fail { "fail" } else { "succeed" }
    );
    let lines: Vec<&str> = text.lines().collect();
    let mut next = 0;
    for want in &expect {
        match lines[next..].iter().position(|l| matches(want, l)) {
            Some(i) => next += i + 1,
            None => panic!(
                "{at}: `{}` printed no line matching\n  {want}\n(after the lines matched so far); it printed:\n{text}",
                cmd.text
            ),
        }
    }
}
