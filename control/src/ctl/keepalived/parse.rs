//! keepalived.conf as keepalived 2.2 reads it (lib/parser.c): lines, `!` and
//! `#` comments, double-quoted words, `include` with glob patterns, blocks in
//! braces. The result is a tree of statements, each with the file and line it
//! was written on. What a keyword means is for `map`; this reader knows none.
//!
//! keepalived's rules, as its parser applies them:
//! - `!` or `#` outside quotes starts a comment anywhere on a line; `\!` and
//!   `\#` are the characters themselves; a `\` at the end joins the next line.
//! - Words are split at blanks; `"..."` is one word (no escapes inside).
//! - `include PATTERN` (anywhere; keepalived 2.2's `includer`, `includem`,
//!   `includew`, `includeb`, `includea` read the same): a glob (with
//!   `{a,b}`), relative to the directory of the file that includes it; the
//!   matches are read in order. A pattern with wildcards that matches
//!   nothing is a note, a plain path that does not exist an error (keepalived
//!   warns and goes on without it). Including a file that is already being
//!   read (a loop) is an error.
//! - A block opens with `{` after its keyword's words (on the same line or
//!   the next) and closes with `}`.
//!
//! keepalived's conditional lines (`@id`), parameters (`$NAME=...`) and
//! sequences (`~SEQ`) are refused: the import would have to guess the
//! config-id and environment keepalived runs with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where something was written: `FILE:LINE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A problem with the file: one line, naming where when it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub loc: Option<Loc>,
    pub message: String,
}

impl Error {
    pub fn at(loc: &Loc, message: impl Into<String>) -> Error {
        Error {
            loc: Some(loc.clone()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(l) => write!(f, "{l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// One statement: its words (the keyword first) and its block, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub loc: Loc,
    pub words: Vec<String>,
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    pub fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or(&[])
    }
}

/// Where the files come from: the disk, or memory in tests.
pub trait Files {
    /// The whole text of a file.
    fn read(&self, path: &Path) -> Result<String, String>;
    /// The files (not directories) matching a glob pattern, in order.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;
    /// One name for every path to the same file (to see include loops).
    fn identity(&self, path: &Path) -> PathBuf;
}

/// keepalived reads at most this much of one file; a larger one is refused
/// rather than read into memory (a device, a log file by mistake).
const MAX_FILE: u64 = 16 << 20;
/// Includes within includes, and blocks within blocks, at most this deep.
const MAX_DEPTH: usize = 32;
/// A brace pattern expands to at most this many patterns.
const MAX_BRACE_EXPANSION: usize = 1024;

fn glob_options() -> glob::MatchOptions {
    // glob(3)'s: `*` stops at `/` and does not match a leading dot.
    glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    }
}

/// The files on this machine.
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> Result<String, String> {
        use std::io::Read;
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if meta.len() > MAX_FILE {
            return Err(format!("larger than {} MiB", MAX_FILE >> 20));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE).read_to_end(&mut bytes))
            .map_err(|e| e.to_string())?;
        // keepalived reads bytes: a Latin-1 comment is no error. Bytes that
        // are not UTF-8 elsewhere fail as the word they are in.
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let paths = glob::glob_with(pattern, glob_options()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for p in paths {
            let p = p.map_err(|e| e.to_string())?;
            // keepalived skips directories a pattern matches.
            if !p.is_dir() {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Files held in memory (tests): a glob matches their names; `..` is
/// resolved on the name, as if there were no symlinks.
#[derive(Default)]
pub struct MemFiles(pub std::collections::BTreeMap<PathBuf, String>);

fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

impl Files for MemFiles {
    fn read(&self, path: &Path) -> Result<String, String> {
        self.0
            .get(&lexical(path))
            .cloned()
            .ok_or_else(|| "No such file or directory (os error 2)".into())
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let lex = lexical(Path::new(pattern));
        let p = glob::Pattern::new(&lex.to_string_lossy()).map_err(|e| e.to_string())?;
        let (head, _) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        Ok(self
            .0
            .keys()
            .filter(|k| p.matches_path_with(k, glob_options()))
            .map(|k| match (head.is_empty(), k.file_name()) {
                // Named as the pattern names its directory, as glob(3) does.
                (false, Some(name)) => Path::new(head).join(name),
                _ => k.clone(),
            })
            .collect())
    }

    fn identity(&self, path: &Path) -> PathBuf {
        lexical(path)
    }
}

/// Reads `path` and what it includes; returns the statements and the notes
/// (includes that matched nothing).
pub fn load(path: &Path, files: &dyn Files) -> Result<(Vec<Stmt>, Vec<String>), Error> {
    let mut reader = Reader {
        files,
        lines: Vec::new(),
        notes: Vec::new(),
        stack: Vec::new(),
    };
    let text = files.read(path).map_err(|e| Error {
        loc: None,
        message: format!("{}: {e}", path.display()),
    })?;
    reader.stack.push(files.identity(path));
    reader.file(path, &text)?;
    let stmts = tree(&reader.lines)?;
    Ok((stmts, reader.notes))
}

/// A word of a line, and whether it was quoted (a quoted `{` is a word).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
}

struct Line {
    loc: Loc,
    toks: Vec<Tok>,
}

struct Reader<'a> {
    files: &'a dyn Files,
    lines: Vec<Line>,
    notes: Vec<String>,
    /// The files being read, outermost first.
    stack: Vec<PathBuf>,
}

impl Reader<'_> {
    fn file(&mut self, path: &Path, text: &str) -> Result<(), Error> {
        let name: Arc<str> = Arc::from(path.display().to_string());
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut joined = String::new();
        let mut first_line = 0;
        for (i, raw) in text.lines().enumerate() {
            let loc = Loc {
                file: name.clone(),
                line: i + 1,
            };
            let (content, more) = decomment(raw).map_err(|m| Error::at(&loc, m))?;
            if joined.is_empty() {
                first_line = i + 1;
            }
            joined.push_str(&content);
            if more {
                joined.push(' ');
                continue;
            }
            let loc = Loc {
                file: name.clone(),
                line: first_line,
            };
            let line = std::mem::take(&mut joined);
            self.line(&loc, &line, &dir)?;
        }
        if !joined.is_empty() {
            let loc = Loc {
                file: name,
                line: first_line,
            };
            self.line(&loc, &joined, &dir)?;
        }
        Ok(())
    }

    fn line(&mut self, loc: &Loc, text: &str, dir: &Path) -> Result<(), Error> {
        let words = split_words(text).map_err(|m| Error::at(loc, m))?;
        let Some((first, first_quoted)) = words.first() else {
            return Ok(());
        };
        if !first_quoted {
            // keepalived 2.2's variants differ in which misses it reports;
            // here every one reads the same way (see `include`).
            if matches!(
                first.as_str(),
                "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
            ) {
                return match words.as_slice() {
                    [_, (pattern, _)] => self.include(loc, pattern, dir),
                    _ => Err(Error::at(loc, format!("{first} takes one file or pattern"))),
                };
            }
            if first.starts_with('@') {
                return Err(Error::at(
                    loc,
                    format!(
                        "conditional configuration ('{first}') is not supported: \
                         write the lines for this director without '@'"
                    ),
                ));
            }
            if first.starts_with('$') {
                return Err(Error::at(
                    loc,
                    format!(
                        "parameter definitions ('{first}') are not supported: \
                         write the values out"
                    ),
                ));
            }
            if first.starts_with("~SEQ") || first.starts_with("~LST") {
                return Err(Error::at(
                    loc,
                    format!("'{first}' sequences are not supported: write the lines out"),
                ));
            }
        }
        let mut toks = Vec::new();
        for (w, quoted) in words {
            if quoted {
                toks.push(Tok::Word(w));
                continue;
            }
            // Braces are words of their own, attached or not.
            let mut cur = String::new();
            for c in w.chars() {
                if c == '{' || c == '}' {
                    if !cur.is_empty() {
                        toks.push(Tok::Word(std::mem::take(&mut cur)));
                    }
                    toks.push(if c == '{' { Tok::Open } else { Tok::Close });
                } else {
                    cur.push(c);
                }
            }
            if !cur.is_empty() {
                toks.push(Tok::Word(cur));
            }
        }
        self.lines.push(Line {
            loc: loc.clone(),
            toks,
        });
        Ok(())
    }

    fn include(&mut self, loc: &Loc, pattern: &str, dir: &Path) -> Result<(), Error> {
        if self.stack.len() > MAX_DEPTH {
            return Err(Error::at(
                loc,
                format!("include {pattern}: includes nested more than {MAX_DEPTH} deep"),
            ));
        }
        let patterns = expand_braces(pattern).map_err(|m| Error::at(loc, m))?;
        for p in patterns {
            let full = if Path::new(&p).is_absolute() {
                PathBuf::from(&p)
            } else {
                dir.join(&p)
            };
            let full_str = full.to_string_lossy().into_owned();
            let matches = self
                .files
                .glob(&full_str)
                .map_err(|e| Error::at(loc, format!("include {pattern}: {e}")))?;
            if matches.is_empty() {
                if p.contains(['*', '?', '[']) {
                    self.notes
                        .push(format!("{loc}: include {full_str}: no file matches"));
                    continue;
                }
                return Err(Error::at(
                    loc,
                    format!("include {full_str}: No such file or directory (os error 2)"),
                ));
            }
            for m in matches {
                let id = self.files.identity(&m);
                if self.stack.contains(&id) {
                    return Err(Error::at(
                        loc,
                        format!(
                            "include {}: include loop (the file is already being read)",
                            m.display()
                        ),
                    ));
                }
                let text = self
                    .files
                    .read(&m)
                    .map_err(|e| Error::at(loc, format!("include {}: {e}", m.display())))?;
                self.stack.push(id);
                self.file(&m, &text)?;
                self.stack.pop();
            }
        }
        Ok(())
    }
}

/// keepalived's `decomment`: the line without its comment, and whether a `\`
/// at its end continues it on the next line.
fn decomment(raw: &str) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(raw.len());
    let mut quote = false;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quote = !quote;
                out.push(c);
            }
            // keepalived: `\#` and `\!` outside quotes are the characters;
            // any other `\X` is kept as it is (and X does not open or close
            // a quote); a `\` at the end continues the line.
            '\\' => match chars.next() {
                None => {
                    if quote {
                        return Err("unterminated quote".into());
                    }
                    return Ok((out.trim().to_string(), true));
                }
                Some(n) if !quote && (n == '#' || n == '!') => out.push(n),
                Some(n) => {
                    out.push(c);
                    out.push(n);
                }
            },
            '!' | '#' if !quote => break,
            _ => out.push(c),
        }
    }
    if quote {
        return Err("unterminated quote".into());
    }
    Ok((out.trim().to_string(), false))
}

/// keepalived's `alloc_strvec`: words split at blanks, a `"..."` one word
/// (quoted: true). A `"` inside a word ends it.
fn split_words(line: &str) -> Result<Vec<(String, bool)>, String> {
    let mut words = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(words);
        }
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').ok_or("unterminated quote")?;
            words.push((q[..end].to_string(), true));
            rest = &q[end + 1..];
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            words.push((rest[..end].to_string(), false));
            rest = &rest[end..];
        }
    }
}

/// glob(3)'s GLOB_BRACE: `a{b,c}d` is `abd` and `acd`; nested braces expand
/// too. Braces without a comma stay as they are.
fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand_into(pattern, &mut out)?;
    Ok(out)
}

fn expand_into(p: &str, out: &mut Vec<String>) -> Result<(), String> {
    if out.len() > MAX_BRACE_EXPANSION {
        return Err(format!(
            "include pattern expands to more than {MAX_BRACE_EXPANSION} patterns"
        ));
    }
    // The first `{` with a matching `}` and a comma between them at depth 1.
    let bytes = p.as_bytes();
    for (start, &b) in bytes.iter().enumerate() {
        if b != b'{' {
            continue;
        }
        let mut depth = 0;
        let mut commas = Vec::new();
        let mut end = None;
        for (i, &c) in bytes.iter().enumerate().skip(start) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                b',' if depth == 1 => commas.push(i),
                _ => {}
            }
        }
        let Some(end) = end else { break };
        if commas.is_empty() {
            continue;
        }
        let (head, tail) = (&p[..start], &p[end + 1..]);
        let mut from = start + 1;
        for cut in commas.into_iter().chain([end]) {
            expand_into(&format!("{head}{}{tail}", &p[from..cut]), out)?;
            from = cut + 1;
        }
        return Ok(());
    }
    out.push(p.to_string());
    Ok(())
}

/// The statements of the lines: words up to the end of a line or a brace; a
/// `{` after them (there or on a following line) opens the statement's block.
fn tree(lines: &[Line]) -> Result<Vec<Stmt>, Error> {
    // `None` ends a line.
    let toks: Vec<(&Loc, Option<&Tok>)> = lines
        .iter()
        .flat_map(|l| {
            l.toks
                .iter()
                .map(move |t| (&l.loc, Some(t)))
                .chain([(&l.loc, None)])
        })
        .collect();
    let mut pos = 0;
    block(&toks, &mut pos, None, 0)
}

/// The statements up to the `}` closing the block opened at `opened` (the
/// end of the input at the top level).
fn block(
    toks: &[(&Loc, Option<&Tok>)],
    pos: &mut usize,
    opened: Option<&Loc>,
    depth: usize,
) -> Result<Vec<Stmt>, Error> {
    let skip_ends = |mut p: usize| {
        while matches!(toks.get(p), Some((_, None))) {
            p += 1;
        }
        p
    };
    let mut out = Vec::new();
    loop {
        *pos = skip_ends(*pos);
        let Some(&(loc, tok)) = toks.get(*pos) else {
            return match opened {
                Some(o) => Err(Error::at(o, "block not closed: '}' missing")),
                None => Ok(out),
            };
        };
        match tok {
            Some(Tok::Close) => {
                *pos += 1;
                return match opened {
                    Some(_) => Ok(out),
                    None => Err(Error::at(loc, "'}' without a block to close")),
                };
            }
            Some(Tok::Open) => return Err(Error::at(loc, "'{' without a keyword before it")),
            _ => {}
        }
        let mut words = Vec::new();
        while let Some((_, Some(Tok::Word(w)))) = toks.get(*pos) {
            words.push(w.clone());
            *pos += 1;
        }
        let look = skip_ends(*pos);
        let sub = match toks.get(look) {
            Some((open_loc, Some(Tok::Open))) => {
                if depth >= MAX_DEPTH {
                    return Err(Error::at(
                        open_loc,
                        format!("blocks nested more than {MAX_DEPTH} deep"),
                    ));
                }
                *pos = look + 1;
                Some(block(toks, pos, Some(loc), depth + 1)?)
            }
            _ => None,
        };
        out.push(Stmt {
            loc: loc.clone(),
            words,
            block: sub,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> MemFiles {
        MemFiles(
            list.iter()
                .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                .collect(),
        )
    }

    fn read(list: &[(&str, &str)]) -> Result<(Vec<Stmt>, Vec<String>), Error> {
        load(Path::new(list[0].0), &files(list))
    }

    /// Each statement as `LINE: words` with its block indented below it.
    fn show(stmts: &[Stmt]) -> String {
        fn walk(s: &[Stmt], depth: usize, out: &mut String) {
            for st in s {
                out.push_str(&format!(
                    "{}{}: {}\n",
                    "  ".repeat(depth),
                    st.loc,
                    st.words.join("|")
                ));
                if let Some(b) = &st.block {
                    walk(b, depth + 1, out);
                }
            }
        }
        let mut out = String::new();
        walk(stmts, 0, &mut out);
        out
    }

    #[test]
    fn comments_quotes_and_blocks_read_as_keepalived_reads_them() {
        let text = "\
! Configuration File for keepalived
# a comment
virtual_server 10.0.0.1 80 {   # trailing comment
    lb_algo rr ! another
    real_server 10.1.0.1 80
    {
        MISC_CHECK {
            misc_path \"/bin/check --flag # not a comment\"
        }
    }
    url{ path /a\\#b }
    notify_up \"\"
}
";
        let (stmts, notes) = read(&[("k.conf", text)]).unwrap();
        assert!(notes.is_empty());
        assert_eq!(
            show(&stmts),
            "\
k.conf:3: virtual_server|10.0.0.1|80
  k.conf:4: lb_algo|rr
  k.conf:5: real_server|10.1.0.1|80
    k.conf:7: MISC_CHECK
      k.conf:8: misc_path|/bin/check --flag # not a comment
  k.conf:11: url
    k.conf:11: path|/a#b
  k.conf:12: notify_up|
"
        );
    }

    #[test]
    fn backslashes_as_keepalived_decomments_them() {
        assert_eq!(decomment(r"a \# b # c"), Ok(("a # b".to_string(), false)));
        // An escaped quote does not close the quote; `#` inside it stays.
        assert_eq!(
            decomment(r##"x "a\"#b" y"##),
            Ok((r##"x "a\"#b" y"##.to_string(), false))
        );
        assert_eq!(decomment(r"a\n b \"), Ok((r"a\n b".to_string(), true)));
        assert_eq!(
            decomment(r#""open \"#),
            Err("unterminated quote".to_string())
        );
    }

    #[test]
    fn a_backslash_at_the_end_joins_the_next_line() {
        let (stmts, _) = read(&[("k.conf", "misc_path a \\\n   b c\nnext 1\n")]).unwrap();
        assert_eq!(
            show(&stmts),
            "k.conf:1: misc_path|a|b|c\nk.conf:3: next|1\n"
        );
    }

    #[test]
    fn bad_structure_is_an_error_naming_the_line() {
        let cases: &[(&str, &str)] = &[
            ("a {\n b 1\n", "k.conf:1: block not closed: '}' missing"),
            ("a 1\n}\n", "k.conf:2: '}' without a block to close"),
            (
                "a 1\n{ b }\n{ c }\n",
                "k.conf:3: '{' without a keyword before it",
            ),
            ("x \"open\n", "k.conf:1: unterminated quote"),
            (
                "@main router_id a\n",
                "k.conf:1: conditional configuration ('@main') is not supported: \
                 write the lines for this director without '@'",
            ),
            (
                "$VIP=10.0.0.1\n",
                "k.conf:1: parameter definitions ('$VIP=10.0.0.1') are not supported: \
                 write the values out",
            ),
            ("include\n", "k.conf:1: include takes one file or pattern"),
        ];
        for (text, want) in cases {
            let e = read(&[("k.conf", text)]).unwrap_err();
            assert_eq!(e.to_string(), *want, "for {text:?}");
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = "a {\n".repeat(10_000);
        let e = read(&[("k.conf", &deep)]).unwrap_err();
        assert_eq!(e.to_string(), "k.conf:33: blocks nested more than 32 deep");
    }

    #[test]
    fn includes_are_relative_to_the_including_file_and_globbed_in_order() {
        let list = [
            (
                "/etc/keepalived/keepalived.conf",
                "include conf.d/*.conf\nincludea /opt/{x,y}.conf\ntop 1\n",
            ),
            (
                "/etc/keepalived/conf.d/b.conf",
                "b 1\ninclude ../sub/c.conf\n",
            ),
            ("/etc/keepalived/conf.d/a.conf", "a 1\n"),
            ("/etc/keepalived/conf.d/a.conf.bak", "never 1\n"),
            ("/etc/keepalived/sub/c.conf", "c {\n  d 1\n}\n"),
            ("/opt/y.conf", "y 1\n"),
            ("/opt/x.conf", "x 1\n"),
        ];
        let (stmts, notes) = read(&list).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            show(&stmts),
            "\
/etc/keepalived/conf.d/a.conf:1: a|1
/etc/keepalived/conf.d/b.conf:1: b|1
/etc/keepalived/conf.d/../sub/c.conf:1: c
  /etc/keepalived/conf.d/../sub/c.conf:2: d|1
/opt/x.conf:1: x|1
/opt/y.conf:1: y|1
/etc/keepalived/keepalived.conf:3: top|1
"
        );
    }

    #[test]
    fn a_block_may_span_an_include() {
        let list = [
            (
                "k.conf",
                "virtual_server 10.0.0.1 80 {\ninclude rs.conf\n}\n",
            ),
            ("rs.conf", "real_server 10.1.0.1 80 {\n weight 2\n}\n"),
        ];
        let (stmts, _) = read(&list).unwrap();
        assert_eq!(
            show(&stmts),
            "k.conf:1: virtual_server|10.0.0.1|80\n  rs.conf:1: real_server|10.1.0.1|80\n    rs.conf:2: weight|2\n"
        );
    }

    #[test]
    fn missing_includes_and_loops() {
        // A pattern that matches nothing is a note, as keepalived warns.
        let (_, notes) = read(&[("k.conf", "include conf.d/*.conf\n")]).unwrap();
        assert_eq!(notes, ["k.conf:1: include conf.d/*.conf: no file matches"]);
        // A plain file that is missing is an error at the include.
        let e = read(&[("k.conf", "a 1\ninclude other.conf\n")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.conf:2: include other.conf: No such file or directory (os error 2)"
        );
        // A loop is an error at the include that closes it.
        let e = read(&[
            ("k.conf", "include a.conf\n"),
            ("a.conf", "x 1\ninclude b.conf\n"),
            ("b.conf", "include k.conf\n"),
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "b.conf:1: include k.conf: include loop (the file is already being read)"
        );
        let e = read(&[("k.conf", "include k.conf\n")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("k.conf:1: include k.conf: include loop"),
            "{e}"
        );
        // The top file itself.
        let e = load(Path::new("none.conf"), &MemFiles::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "none.conf: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn brace_patterns_expand_like_glob_brace() {
        assert_eq!(
            expand_braces("a{b,c{d,e}}f").unwrap(),
            ["abf", "acdf", "acef"]
        );
        assert_eq!(expand_braces("x{y}z").unwrap(), ["x{y}z"]);
        assert_eq!(expand_braces("x{a,b").unwrap(), ["x{a,b"]);
        assert!(expand_braces(&"{a,b}".repeat(20)).is_err(), "2^20 patterns");
    }

    #[test]
    fn includes_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("keepalived.conf");
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::create_dir(dir.path().join("d/sub.conf")).unwrap();
        std::fs::write(&top, "include d/*.conf\n").unwrap();
        std::fs::write(dir.path().join("d/1.conf"), "one 1\n").unwrap();
        std::fs::write(dir.path().join("d/.hidden.conf"), "hidden 1\n").unwrap();
        let (stmts, _) = load(&top, &Disk).unwrap();
        // Directories and dot files are not matched, as with glob(3).
        assert_eq!(stmts.len(), 1);
        assert_eq!(stmts[0].words, ["one", "1"]);
        assert_eq!(
            stmts[0].loc.file.as_ref(),
            dir.path().join("d/1.conf").display().to_string()
        );
        // A loop through a symlink is seen too.
        std::fs::write(dir.path().join("d/1.conf"), "include ../keepalived.conf\n").unwrap();
        let e = load(&top, &Disk).unwrap_err();
        assert!(e.message.contains("include loop"), "{e}");
        // Not UTF-8 in a comment: read on, as keepalived does.
        std::fs::write(&top, b"# caf\xe9\nvirtual_server_x 1\n").unwrap();
        let (stmts, _) = load(&top, &Disk).unwrap();
        assert_eq!(stmts[0].words, ["virtual_server_x", "1"]);
        // A directory as the file.
        let e = load(dir.path(), &Disk).unwrap_err();
        assert!(e.message.ends_with("not a regular file"), "{e}");
    }
}
