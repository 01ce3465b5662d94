//! The layer rules of ARCHITECTURE.md, checked over every file under `src/` (as rust-analyzer's
//! `tidy.rs` does). The rules are not repeated here: this test reads the two tables of
//! ARCHITECTURE.md's "Layers" section, so the document and the check cannot drift.
//!
//! Each file is parsed with `syn`. Every path it names counts: `use` trees (grouped, renamed,
//! glob, `pub use`), paths in items and function bodies, and paths inside macro calls (read
//! from their tokens). `crate::`, `super::`, `self::`, child modules and names bound by a
//! `use` are resolved to the module they name; a path that starts with a crate name is that
//! crate's. String literals are read as their values, so SQL is found in any case, raw or
//! multi-line. Doc comments are prose and may name anything.
//!
//! The last tests plant a violation of each rule in a temporary source tree and show that the
//! check reports it: a rule that cannot fail is no rule.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::visit::Visit;

// ---------------------------------------------------------------------------------------------
// The rules, read from ARCHITECTURE.md.

/// A module path, `["storage", "redis"]`.
type ModulePath = Vec<String>;

/// One row of the layer table.
#[derive(Debug)]
struct Layer {
    module: ModulePath,
    /// Modules, or items of a module (`storage::RedisStore`), it may import.
    may_import: Vec<ModulePath>,
}

/// What one row of the confinement table is about.
#[derive(Debug, Clone, PartialEq)]
enum Confined {
    /// Paths starting with these segments (`tokio::spawn`, `hyper`).
    Paths(Vec<ModulePath>),
    /// String literals that read as SQL.
    SqlText,
}

#[derive(Debug)]
struct Confinement {
    what: Confined,
    /// The modules where it may appear; empty: nowhere.
    only_in: Vec<ModulePath>,
}

#[derive(Debug)]
struct Rules {
    layers: Vec<Layer>,
    confinements: Vec<Confinement>,
}

impl Rules {
    fn from_architecture() -> Rules {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md");
        Rules::parse(&std::fs::read_to_string(path).expect("ARCHITECTURE.md"))
    }

    fn parse(markdown: &str) -> Rules {
        let layers = table_after(markdown, "<!-- layers:")
            .into_iter()
            .map(|cells| {
                let module = ticked(&cells[0]);
                assert_eq!(module.len(), 1, "one module per layer row: {cells:?}");
                Layer {
                    module: module[0].clone(),
                    may_import: ticked(&cells[1]),
                }
            })
            .collect();
        let confinements = table_after(markdown, "<!-- confined:")
            .into_iter()
            .map(|cells| Confinement {
                what: if cells[0].trim() == "SQL text" {
                    Confined::SqlText
                } else {
                    Confined::Paths(ticked(&cells[0]))
                },
                only_in: ticked(&cells[1]),
            })
            .collect();
        Rules {
            layers,
            confinements,
        }
    }

    /// The most specific row for a file of `module`.
    fn layer_of(&self, module: &[String]) -> Option<&Layer> {
        self.layers
            .iter()
            .filter(|layer| module.starts_with(&layer.module))
            .max_by_key(|layer| layer.module.len())
    }

    /// The top-level modules the table knows.
    fn modules(&self) -> BTreeSet<String> {
        self.layers
            .iter()
            .map(|layer| layer.module[0].clone())
            .collect()
    }
}

/// The cells of the rows of the first markdown table after the line holding `marker`.
fn table_after(markdown: &str, marker: &str) -> Vec<Vec<String>> {
    let start = markdown
        .find(marker)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no table marked {marker}"));
    let rows: Vec<Vec<String>> = markdown[start..]
        .lines()
        .skip(1)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and its separator
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(str::to_owned)
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "the table marked {marker} is empty");
    rows
}

/// The `back-ticked` paths of a table cell, each split at `::`.
fn ticked(cell: &str) -> Vec<ModulePath> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|path| path.split("::").map(str::to_owned).collect())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The source, read with syn.

struct SourceFile {
    /// Relative to the tree's root, `src/http/router.rs`.
    relative: String,
    /// `["http", "router"]`; `["lib"]` and `["main"]` for the crate roots.
    module: ModulePath,
    text: String,
}

/// Every `.rs` file under `root/src`.
fn source_files(root: &Path) -> Vec<SourceFile> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            SourceFile {
                module: module_of(&relative),
                text: std::fs::read_to_string(&path).unwrap(),
                relative,
            }
        })
        .collect()
}

fn module_of(relative: &str) -> ModulePath {
    let inner = relative
        .strip_prefix("src/")
        .unwrap()
        .strip_suffix(".rs")
        .unwrap();
    let mut module: ModulePath = inner.split('/').map(str::to_owned).collect();
    if module.last().is_some_and(|last| last == "mod") {
        module.pop();
    }
    module
}

/// A path a file names, resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Named {
    /// An item of this crate, by its path from the crate root.
    Ours(ModulePath),
    /// A path into another crate (or a name this check cannot resolve, such as a type's
    /// associated item): as written, without a leading `::`.
    Theirs(ModulePath),
}

/// What a file names: every path, where, and every string literal's value.
#[derive(Default)]
struct Names {
    paths: Vec<(Named, usize)>,
    strings: Vec<(String, usize)>,
    /// Macros exported from this file (`#[macro_export] macro_rules! name`).
    exported_macros: Vec<String>,
    /// `pub use` items of a crate root: name to path.
    reexports: Vec<(String, ModulePath)>,
}

/// Reads a file: its `use` trees with syn, every other path and literal from its tokens
/// (which reach into macro calls), doc comments left out.
fn names_of(file: &SourceFile) -> Names {
    let syntax = syn::parse_file(&file.text)
        .unwrap_or_else(|error| panic!("{}: not Rust: {error}", file.relative));
    let mut uses = UseCollector {
        file_module: file.module.clone(),
        inline: Vec::new(),
        names: Names::default(),
        aliases: HashMap::new(),
        children: HashSet::new(),
        crate_root: file.module == ["lib"],
    };
    uses.visit_file(&syntax);
    let tokens = TokenStream::from_str(&file.text).expect("tokens");
    let mut scanner = TokenScanner {
        uses: &mut uses,
        inline: Vec::new(),
    };
    scanner.scan(tokens);
    uses.names
}

/// How a file's names resolve: its module, the modules nested in it, and what its `use`
/// items bound.
struct UseCollector {
    file_module: ModulePath,
    /// Inline `mod name { … }` being visited.
    inline: Vec<String>,
    names: Names,
    /// A name a `use` bound (per inline module) to the path it names.
    aliases: HashMap<(Vec<String>, String), Vec<String>>,
    /// Child modules declared in this file (per inline module).
    children: HashSet<(Vec<String>, String)>,
    crate_root: bool,
}

impl UseCollector {
    /// The module the code at `inline` is in, from the crate root.
    fn current(&self, inline: &[String]) -> ModulePath {
        let mut module = if self.crate_root || self.file_module == ["main"] {
            Vec::new()
        } else {
            self.file_module.clone()
        };
        module.extend(inline.iter().cloned());
        module
    }

    /// Resolves a path written in the code at `inline` (segments as written; `leading`: it
    /// began with `::`).
    fn resolve(&self, inline: &[String], segments: &[String], leading: bool) -> Named {
        if leading {
            return Named::Theirs(segments.to_vec());
        }
        let Some((first, rest)) = segments.split_first() else {
            return Named::Theirs(Vec::new());
        };
        let ours = |mut base: ModulePath, rest: &[String]| {
            base.extend(rest.iter().cloned());
            Named::Ours(base)
        };
        match first.as_str() {
            "crate" => ours(Vec::new(), rest),
            // The binary names the library by its crate name.
            "shortener" if self.file_module == ["main"] => ours(Vec::new(), rest),
            "self" => ours(self.current(inline), rest),
            "super" => {
                let mut base = self.current(inline);
                let mut rest = rest;
                base.pop();
                while let Some(("super", more)) = rest.split_first().map(|(s, m)| (s.as_str(), m)) {
                    base.pop();
                    rest = more;
                }
                ours(base, rest)
            }
            name => {
                if let Some(target) = self.alias(inline, name) {
                    return ours(target.clone(), rest);
                }
                if self.is_child(inline, name) {
                    return ours(self.current(inline), segments);
                }
                Named::Theirs(segments.to_vec())
            }
        }
    }

    /// What `name` was bound to by a `use` in scope at `inline` (or an enclosing module of the
    /// same file, for the glob-free cases this crate has).
    fn alias(&self, inline: &[String], name: &str) -> Option<&Vec<String>> {
        (0..=inline.len()).rev().find_map(|depth| {
            let resolved = self
                .aliases
                .get(&(inline[..depth].to_vec(), name.to_owned()))?;
            Some(resolved)
        })
    }

    fn is_child(&self, inline: &[String], name: &str) -> bool {
        self.children.contains(&(inline.to_vec(), name.to_owned()))
    }

    /// Records every leaf of a `use` tree (and the name it binds).
    fn use_tree(
        &mut self,
        tree: &syn::UseTree,
        prefix: &mut Vec<String>,
        line: usize,
        leading: bool,
    ) {
        let inline = self.inline.clone();
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(&path.tree, prefix, line, leading);
                prefix.pop();
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(tree, prefix, line, leading);
                }
            }
            syn::UseTree::Glob(_) => {
                let named = self.resolve(&inline, prefix, leading);
                self.names.paths.push((named, line));
            }
            syn::UseTree::Name(name) => {
                let ident = name.ident.to_string();
                let mut full = prefix.clone();
                // `use crate::http::{self, …}` binds `http`.
                let bound = if ident == "self" {
                    prefix.last().cloned().unwrap_or_default()
                } else {
                    full.push(ident.clone());
                    ident
                };
                self.bind(inline, bound, &full, line, leading);
            }
            syn::UseTree::Rename(rename) => {
                let mut full = prefix.clone();
                if rename.ident != "self" {
                    full.push(rename.ident.to_string());
                }
                self.bind(inline, rename.rename.to_string(), &full, line, leading);
            }
        }
    }

    fn bind(
        &mut self,
        inline: Vec<String>,
        bound: String,
        full: &[String],
        line: usize,
        leading: bool,
    ) {
        let named = self.resolve(&inline, full, leading);
        if let Named::Ours(target) = &named {
            if self.crate_root || self.file_module == ["main"] {
                self.names.reexports.push((bound.clone(), target.clone()));
            }
            self.aliases.insert((inline, bound), target.clone());
        }
        self.names.paths.push((named, line));
    }
}

impl<'ast> Visit<'ast> for UseCollector {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let line = item.use_token.span.start().line;
        self.use_tree(
            &item.tree,
            &mut Vec::new(),
            line,
            item.leading_colon.is_some(),
        );
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.children
            .insert((self.inline.clone(), item.ident.to_string()));
        if item.content.is_some() {
            self.inline.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.inline.pop();
        }
    }

    fn visit_item_macro(&mut self, item: &'ast syn::ItemMacro) {
        let exported = item
            .attrs
            .iter()
            .any(|attr| attr.path().is_ident("macro_export"));
        if let (true, Some(name)) = (exported, &item.ident) {
            self.names.exported_macros.push(name.to_string());
        }
        syn::visit::visit_item_macro(self, item);
    }
}

/// Every path and string literal in a file's tokens, `use` items left to syn.
struct TokenScanner<'a> {
    uses: &'a mut UseCollector,
    inline: Vec<String>,
}

impl TokenScanner<'_> {
    fn scan(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut at = 0;
        while at < tokens.len() {
            at = self.step(&tokens, at);
        }
    }

    /// Reads what starts at `tokens[at]`; answers where the next thing starts.
    fn step(&mut self, tokens: &[TokenTree], at: usize) -> usize {
        match &tokens[at] {
            // `#[doc = "…"]` and `#![doc = "…"]`: prose.
            TokenTree::Punct(punct) if punct.as_char() == '#' => {
                let group_at = if is_punct(tokens.get(at + 1), '!') {
                    at + 2
                } else {
                    at + 1
                };
                if let Some(TokenTree::Group(group)) = tokens.get(group_at)
                    && group.delimiter() == Delimiter::Bracket
                {
                    let is_doc = matches!(
                        group.stream().into_iter().next(),
                        Some(TokenTree::Ident(ident)) if ident == "doc"
                    );
                    if !is_doc {
                        self.scan(group.stream());
                    }
                    return group_at + 1;
                }
                at + 1
            }
            // `use …;` is syn's to read.
            TokenTree::Ident(ident) if ident == "use" => {
                let mut next = at + 1;
                while next < tokens.len() && !is_punct(tokens.get(next), ';') {
                    next += 1;
                }
                next + 1
            }
            // `mod name { … }`: paths inside resolve from there.
            TokenTree::Ident(ident) if ident == "mod" => {
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(body))) =
                    (tokens.get(at + 1), tokens.get(at + 2))
                    && body.delimiter() == Delimiter::Brace
                {
                    self.inline.push(name.to_string());
                    self.scan(body.stream());
                    self.inline.pop();
                    return at + 3;
                }
                at + 1
            }
            TokenTree::Ident(_) => self.path(tokens, at, false),
            TokenTree::Punct(punct)
                if punct.as_char() == ':'
                    && is_punct(tokens.get(at + 1), ':')
                    && !follows_path(tokens, at) =>
            {
                self.path(tokens, at + 2, true)
            }
            TokenTree::Group(group) => {
                self.scan(group.stream());
                at + 1
            }
            TokenTree::Literal(literal) => {
                let line = literal.span().start().line;
                if let Ok(syn::Lit::Str(string)) = syn::parse_str::<syn::Lit>(&literal.to_string())
                {
                    self.uses.names.strings.push((string.value(), line));
                }
                at + 1
            }
            TokenTree::Punct(_) => at + 1,
        }
    }

    /// Reads the path `a::b::c` starting at `tokens[at]` (an identifier); answers where the
    /// next thing starts.
    fn path(&mut self, tokens: &[TokenTree], at: usize, leading: bool) -> usize {
        // A field or method (`x.http`) is no path.
        let after_dot = at > 0 && is_punct(tokens.get(at - 1), '.') && !leading;
        let mut segments = Vec::new();
        let mut next = at;
        while let Some(TokenTree::Ident(ident)) = tokens.get(next) {
            segments.push(ident.to_string());
            if is_punct(tokens.get(next + 1), ':') && is_punct(tokens.get(next + 2), ':') {
                next += 3;
            } else {
                next += 1;
                break;
            }
        }
        if !after_dot && (segments.len() > 1 || leading) {
            let line = tokens[at].span().start().line;
            let named = self.uses.resolve(&self.inline, &segments, leading);
            self.uses.names.paths.push((named, line));
        }
        next.max(at + 1)
    }
}

fn is_punct(token: Option<&TokenTree>, c: char) -> bool {
    matches!(token, Some(TokenTree::Punct(punct)) if punct.as_char() == c)
}

/// Whether the `::` at `at` continues a path (`Vec::<u8>::new`, `a::b`) rather than starting one.
fn follows_path(tokens: &[TokenTree], at: usize) -> bool {
    at > 0
        && (matches!(&tokens[at - 1], TokenTree::Ident(_) | TokenTree::Group(_))
            || is_punct(tokens.get(at - 1), '>'))
}

// ---------------------------------------------------------------------------------------------
// The check.

/// Whether a string literal reads as SQL.
fn looks_like_sql(text: &str) -> bool {
    let words: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let pair = |a: &str, b: &str| words.windows(2).any(|w| w[0] == a && w[1] == b);
    let has = |a: &str| words.iter().any(|word| word == a);
    pair("insert", "into")
        || pair("delete", "from")
        || pair("on", "conflict")
        || pair("create", "table")
        || pair("create", "index")
        || pair("alter", "table")
        || pair("drop", "table")
        || pair("lock", "table")
        || (has("select") && has("from"))
        || words.windows(3).any(|w| w[0] == "update" && w[2] == "set")
}

/// Every way the tree at `root` breaks `rules`, as `file:line: what`.
fn check(root: &Path, rules: &Rules) -> Vec<String> {
    let files = source_files(root);
    let read: Vec<(&SourceFile, Names)> = files.iter().map(|file| (file, names_of(file))).collect();
    let top_level = rules.modules();
    // Names at the crate root that are not modules: exported macros and re-exports.
    let mut root_items: HashMap<String, String> = HashMap::new();
    for (file, names) in &read {
        for name in &names.exported_macros {
            root_items.insert(name.clone(), file.module[0].clone());
        }
        if file.module == ["lib"] {
            for (name, target) in &names.reexports {
                if let Some(module) = target.first() {
                    root_items.insert(name.clone(), module.clone());
                }
            }
        }
    }
    let mut violations = Vec::new();
    for (file, names) in &read {
        let at = |line: usize| format!("{}:{line}", file.relative);
        if !file.text.starts_with("//!") {
            violations.push(format!(
                "{}:1: a module starts with a //! line saying what it owns",
                file.relative
            ));
        }
        let Some(layer) = rules.layer_of(&file.module) else {
            violations.push(format!(
                "{}:1: module {} has no row in the layer table",
                file.relative,
                file.module.join("::")
            ));
            continue;
        };
        let own = &file.module[0];
        for (named, line) in &names.paths {
            match named {
                Named::Ours(path) => {
                    let Some(first) = path.first() else { continue };
                    let target = if top_level.contains(first) {
                        first.clone()
                    } else if let Some(module) = root_items.get(first) {
                        module.clone()
                    } else {
                        violations.push(format!(
                            "{}: crate::{} names no module of the layer table",
                            at(*line),
                            path.join("::")
                        ));
                        continue;
                    };
                    let allowed = target == *own
                        || layer.may_import.iter().any(|entry| {
                            entry.first() == Some(&target)
                                && (entry.len() == 1 || path.starts_with(entry))
                        });
                    if !allowed {
                        violations.push(format!(
                            "{}: {} may not import {} (crate::{})",
                            at(*line),
                            file.module.join("::"),
                            target,
                            path.join("::")
                        ));
                    }
                }
                Named::Theirs(path) => {
                    for confinement in &rules.confinements {
                        let Confined::Paths(confined) = &confinement.what else {
                            continue;
                        };
                        let Some(rule) = confined.iter().find(|rule| path.starts_with(rule)) else {
                            continue;
                        };
                        let permitted = confinement
                            .only_in
                            .iter()
                            .any(|module| file.module.starts_with(module));
                        if !permitted {
                            violations.push(format!(
                                "{}: {} is not allowed in {} ({})",
                                at(*line),
                                rule.join("::"),
                                file.module.join("::"),
                                path.join("::")
                            ));
                        }
                    }
                }
            }
        }
        for confinement in &rules.confinements {
            if confinement.what != Confined::SqlText
                || confinement
                    .only_in
                    .iter()
                    .any(|module| file.module.starts_with(module))
            {
                continue;
            }
            for (text, line) in &names.strings {
                if looks_like_sql(text) {
                    violations.push(format!(
                        "{}: SQL text outside storage: {:?}",
                        at(*line),
                        text.lines().next().unwrap_or_default()
                    ));
                }
            }
        }
    }
    violations.sort();
    violations.dedup();
    violations
}

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_source_keeps_the_layer_tables_of_architecture_md() {
    let violations = check(repository(), &Rules::from_architecture());
    assert!(
        violations.is_empty(),
        "ARCHITECTURE.md's rules are broken at:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_layer_table_names_every_module_once_and_has_no_cycle() {
    let rules = Rules::from_architecture();
    let in_table: Vec<String> = rules
        .layers
        .iter()
        .filter(|layer| layer.module.len() == 1)
        .map(|layer| layer.module[0].clone())
        .collect();
    let unique: BTreeSet<&String> = in_table.iter().collect();
    assert_eq!(unique.len(), in_table.len(), "a module has two rows");
    let in_source: BTreeSet<String> = source_files(repository())
        .into_iter()
        .map(|file| file.module[0].clone())
        .collect();
    assert_eq!(
        in_source,
        rules.modules(),
        "the table and src/ name other modules"
    );
    // Depth-first, with the crate root left out (it declares every module).
    let edges: HashMap<&str, Vec<&str>> = rules
        .layers
        .iter()
        .filter(|layer| layer.module != ["lib"])
        .map(|layer| {
            let targets = layer
                .may_import
                .iter()
                .map(|entry| entry[0].as_str())
                .collect();
            (layer.module[0].as_str(), targets)
        })
        .collect();
    fn visit<'a>(
        module: &'a str,
        edges: &HashMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) {
        assert!(!path.contains(&module), "a cycle: {path:?} -> {module}");
        if !done.insert(module) {
            return;
        }
        path.push(module);
        for next in edges.get(module).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
    }
    let mut done = HashSet::new();
    for module in edges.keys() {
        visit(module, &edges, &mut Vec::new(), &mut done);
    }
}

// ---------------------------------------------------------------------------------------------
// Each rule bites: a violation planted in a temporary tree is reported.

/// Checks a temporary tree holding `files` (relative path, text) against the real rules.
fn check_planted(files: &[(&str, &str)]) -> Vec<String> {
    let root = std::env::temp_dir().join(format!(
        "shortener-architecture-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    for (relative, text) in files {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let violations = check(&root, &Rules::from_architecture());
    std::fs::remove_dir_all(&root).unwrap();
    violations
}

/// Asserts that the planted file breaks a rule, reported on `line` with `says` in it.
fn assert_bites(relative: &str, text: &str, line: usize, says: &str) {
    let violations = check_planted(&[(relative, text)]);
    let expected = format!("{relative}:{line}:");
    assert!(
        violations
            .iter()
            .any(|found| found.starts_with(&expected) && found.contains(says)),
        "no violation at {expected} saying {says:?} in {violations:?}"
    );
}

#[test]
fn a_clean_file_passes() {
    let clean = "//! A handler.\nuse crate::links::Resolver;\nuse super::State;\n\
                 fn f() -> http::StatusCode { http::StatusCode::OK }\n";
    assert_eq!(
        check_planted(&[("src/http/planted.rs", clean)]),
        Vec::<String>::new()
    );
}

#[test]
fn an_import_from_a_layer_not_allowed_is_reported_however_it_is_written() {
    let cases = [
        ("use crate::storage::Db;", 2, "may not import storage"),
        (
            "use crate::{links::Resolver, storage::{Db, StorageError}};",
            2,
            "may not import storage",
        ),
        (
            "pub use crate::startup::Application;",
            2,
            "may not import startup",
        ),
        ("use crate::storage as db;", 2, "may not import storage"),
        (
            "fn f() { let _ = crate::storage::Db::connect_lazy; }",
            2,
            "may not import storage",
        ),
        (
            "fn f() -> usize {\n    let x = 1;\n    crate::config::config_names().len() + x\n}",
            4,
            "may not import config",
        ),
        (
            "fn f() { tracing::info!(\"{}\", crate::startup::Application::local_addr); }",
            2,
            "may not import startup",
        ),
    ];
    for (code, line, says) in cases {
        assert_bites(
            "src/http/planted.rs",
            &format!("//! A plant.\n{code}\n"),
            line,
            says,
        );
    }
    // `super::super::super` from http::routes::planted is the crate root.
    assert_bites(
        "src/http/routes/planted.rs",
        "//! A plant.\nuse super::super::super::storage::Db;\n",
        2,
        "may not import storage",
    );
    // An item-level entry allows that item only: limits may name storage::RedisStore, not Db.
    assert_bites(
        "src/limits/planted.rs",
        "//! A plant.\nuse crate::storage::RedisStore;\nuse crate::storage::Db;\n",
        3,
        "may not import storage",
    );
    // A name the crate root re-exports is its module's.
    let violations = check_planted(&[
        (
            "src/lib.rs",
            "//! The root.\npub mod startup;\npub use startup::Application;\n",
        ),
        ("src/startup.rs", "//! Start-up.\npub struct Application;\n"),
        (
            "src/http/planted.rs",
            "//! A plant.\nfn f(_: Option<crate::Application>) {}\n",
        ),
    ]);
    assert!(
        violations
            .iter()
            .any(|found| found.starts_with("src/http/planted.rs:2:")
                && found.contains("may not import startup")),
        "{violations:?}"
    );
    // A module the table does not know.
    assert_bites("src/nowhere.rs", "//! No row.\n", 1, "has no row");
}

#[test]
fn confined_crates_and_paths_are_reported_outside_their_modules() {
    let cases = [
        (
            "src/links/planted.rs",
            "use hyper::body::Incoming;",
            2,
            "hyper",
        ),
        (
            "src/links/planted.rs",
            "fn f(_: ::hyper::body::Incoming) {}",
            2,
            "hyper",
        ),
        (
            "src/status/planted.rs",
            "fn f() -> http::StatusCode { todo!() }",
            2,
            "http",
        ),
        (
            "src/links/planted.rs",
            "use tokio_postgres::Client;",
            2,
            "tokio_postgres",
        ),
        (
            "src/storage/planted.rs",
            "use fred::prelude::Pool;",
            2,
            "fred",
        ),
        (
            "src/links/planted.rs",
            "fn f() -> Option<String> { std::env::var(\"X\").ok() }",
            2,
            "std::env",
        ),
        ("src/links/planted.rs", "use std::env;", 2, "std::env"),
        (
            "src/links/planted.rs",
            "fn f() { tokio::spawn(async {}); }",
            2,
            "tokio::spawn",
        ),
        (
            "src/startup.rs",
            "fn f() { let _ = tokio::task::spawn_blocking(|| 1); }",
            2,
            "tokio::task::spawn_blocking",
        ),
        (
            "src/links/planted.rs",
            "use tokio::sync::{Mutex, mpsc};",
            2,
            "tokio::sync::Mutex",
        ),
        (
            "src/domain/planted.rs",
            "fn f() { let _ = std::fs::read(\"x\"); }",
            2,
            "std::fs",
        ),
        (
            "src/ids/planted.rs",
            "use tokio::time::Instant;",
            2,
            "tokio",
        ),
    ];
    for (relative, code, line, says) in cases {
        assert_bites(relative, &format!("//! A plant.\n{code}\n"), line, says);
    }
}

#[test]
fn sql_text_is_reported_outside_storage_in_any_case_and_form() {
    let cases = [
        "const Q: &str = \"SELECT id FROM links WHERE code = $1\";",
        "const Q: &str = r#\"select id\n    from links\"#;",
        "const Q: &str = \"insert into links (id) values ($1)\";",
        "fn f() { g(\"UPDATE links \\\n    SET disabled_at = now()\"); }",
        "fn f() { tracing::info!(\"delete from idempotency_keys\"); }",
    ];
    for code in cases {
        assert_bites(
            "src/links/planted.rs",
            &format!("//! A plant.\n{code}\n"),
            2,
            "SQL text",
        );
    }
    // Prose that mentions SQL in a doc comment is not SQL text.
    let documented = "//! A plant.\n/// Runs `SELECT id FROM links`.\nfn f() {}\n";
    assert_eq!(
        check_planted(&[("src/links/planted.rs", documented)]),
        Vec::<String>::new()
    );
}

#[test]
fn a_module_without_its_doc_line_is_reported() {
    assert_bites(
        "src/links/planted.rs",
        "use crate::clock::Clock;\n",
        1,
        "//! line",
    );
}

// ---------------------------------------------------------------------------------------------
// The read path's storage calls, read from ARCHITECTURE.md's "read path" table.

/// The methods called on `self.db` in `text`, with their lines.
fn storage_calls(text: &str) -> Vec<(String, usize)> {
    struct Calls(Vec<(String, usize)>);
    impl<'ast> Visit<'ast> for Calls {
        fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
            if let syn::Expr::Field(field) = &*call.receiver
                && let syn::Member::Named(member) = &field.member
                && member == "db"
                && matches!(&*field.base, syn::Expr::Path(path) if path.path.is_ident("self"))
            {
                let line = call.method.span().start().line;
                self.0.push((call.method.to_string(), line));
            }
            syn::visit::visit_expr_method_call(self, call);
        }
    }
    let file = syn::parse_file(text).expect("the resolver parses");
    let mut calls = Calls(Vec::new());
    calls.visit_file(&file);
    calls.0
}

/// The calls of `text` not in the read path's table.
fn read_path_violations(text: &str) -> Vec<String> {
    let markdown = std::fs::read_to_string(repository().join("ARCHITECTURE.md")).unwrap();
    let allowed: HashSet<String> = table_after(&markdown, "<!-- read path:")
        .iter()
        .map(|row| row[0].trim().trim_matches('`').to_owned())
        .collect();
    storage_calls(text)
        .into_iter()
        .filter(|(method, _)| !allowed.contains(method))
        .map(|(method, line)| format!("src/links/resolver.rs:{line}: self.db.{method}"))
        .collect()
}

#[test]
fn the_read_path_calls_only_the_storage_methods_architecture_md_lists() {
    let text = std::fs::read_to_string(repository().join("src/links/resolver.rs")).unwrap();
    assert!(
        !storage_calls(&text).is_empty(),
        "the resolver's storage calls were not found: the check reads nothing"
    );
    let violations = read_path_violations(&text);
    assert!(
        violations.is_empty(),
        "storage calls on the read path that ARCHITECTURE.md's read-path table does not list \
         (a write there needs a reason in that table):\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn a_write_planted_on_the_read_path_is_reported() {
    let planted = "impl Resolver {\n    async fn redirect(&self) {\n        \
                   self.db.take_visit(1).await;\n        self.db.change_link(1, 1).await;\n    }\n}\n";
    assert_eq!(
        read_path_violations(planted),
        ["src/links/resolver.rs:4: self.db.change_link"]
    );
}
