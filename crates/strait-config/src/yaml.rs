//! YAML text to a located [`Node`] tree, through yaml-rust2's event parser so that every key
//! and value keeps the place it was written.

use std::collections::HashMap;
use std::str::Chars;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};
use yaml_rust2::Yaml;

use crate::tree::{Key, Loc, Node, NodeKind};
use crate::Problem;

/// Deeper nesting than this is no config anyone writes, and bounding it keeps the recursive
/// builder from overflowing the stack on hostile input.
const MAX_DEPTH: usize = 64;

/// Bounds alias expansion ("billion laughs"): aliases are copied, so a few lines could
/// otherwise ask for an exponential number of nodes.
const MAX_NODES: usize = 1_000_000;

/// Parses one YAML document. A syntax error gives no tree and that one problem; duplicate
/// keys and other tree-level problems are reported alongside a tree that keeps the first
/// occurrence, so validation can still find the rest.
pub(crate) fn parse(text: &str) -> (Option<Node>, Vec<Problem>) {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        problems: Vec::new(),
    };
    match builder.document() {
        Ok(node) => (Some(node), builder.problems),
        Err(BuildError::Scan(err)) => (None, vec![scan_problem(&err)]),
        Err(BuildError::Problem(problem)) => (None, vec![problem]),
    }
}

struct Builder<'a> {
    parser: Parser<Chars<'a>>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    problems: Vec<Problem>,
}

enum BuildError {
    Scan(ScanError),
    /// A problem that stops the build, e.g. too deep nesting.
    Problem(Problem),
}

// === impl Builder ===

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Loc), BuildError> {
        let (event, mark) = self.parser.next_token().map_err(BuildError::Scan)?;
        Ok((event, mark_loc(&mark)))
    }

    fn document(&mut self) -> Result<Node, BuildError> {
        let (mut event, mut loc) = self.next()?;
        if event == Event::StreamStart {
            (event, loc) = self.next()?;
        }
        match event {
            Event::StreamEnd => return Ok(Node::new(NodeKind::Null, Loc::START)),
            Event::DocumentStart => {}
            other => return Err(unexpected(&other, loc)),
        }
        let (event, loc) = self.next()?;
        let root = self.node(event, loc, 0)?.0;
        let (event, loc) = self.next()?;
        if event != Event::DocumentEnd {
            return Err(unexpected(&event, loc));
        }
        let (event, loc) = self.next()?;
        if event == Event::DocumentStart {
            self.problems.push(
                Problem::new(
                    loc,
                    "a config file holds one YAML document, found a second one",
                )
                .with_hint("remove the `---` line and what follows it, or merge the documents"),
            );
        }
        Ok(root)
    }

    /// Builds the node that starts with `event`; returns it with its size in nodes.
    fn node(&mut self, event: Event, loc: Loc, depth: usize) -> Result<(Node, usize), BuildError> {
        if depth > MAX_DEPTH {
            return Err(BuildError::Problem(Problem::new(
                loc,
                format!("nesting is deeper than {MAX_DEPTH} levels"),
            )));
        }
        let (node, size, anchor) = match event {
            Event::Scalar(value, style, anchor, tag) => {
                let node = Node::new(scalar(value, style, tag.as_ref()), loc);
                (node, 1, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                let mut size = 1;
                loop {
                    let (event, item_loc) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    let (item, item_size) = self.node(event, item_loc, depth + 1)?;
                    size += item_size;
                    items.push(item);
                }
                (Node::new(NodeKind::Seq(items), loc), size, anchor)
            }
            Event::MappingStart(anchor, _) => {
                let (node, size) = self.mapping(loc, depth)?;
                (node, size, anchor)
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((node, size)) => {
                    let mut node = node.clone();
                    // The copy is reported where the alias is written; its children keep the
                    // anchor's places, which is where their text is.
                    node.loc = loc;
                    (node, *size, 0)
                }
                None => {
                    return Err(BuildError::Problem(Problem::new(
                        loc,
                        "alias to an unknown anchor",
                    )))
                }
            },
            other => return Err(unexpected(&other, loc)),
        };
        self.nodes += size;
        if self.nodes > MAX_NODES {
            return Err(BuildError::Problem(
                Problem::new(
                    loc,
                    format!("the document expands to more than {MAX_NODES} values"),
                )
                .with_hint("use fewer aliases"),
            ));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok((node, size))
    }

    fn mapping(&mut self, start: Loc, depth: usize) -> Result<(Node, usize), BuildError> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        let mut size = 1;
        loop {
            let (event, key_loc) = self.next()?;
            if event == Event::MappingEnd {
                break;
            }
            let name = match event {
                Event::Scalar(value, ..) => value,
                Event::Alias(id) => match self.anchors.get(&id) {
                    Some((
                        Node {
                            kind: NodeKind::Str(value),
                            ..
                        },
                        _,
                    )) => value.clone(),
                    _ => return Err(BuildError::Problem(complex_key(key_loc))),
                },
                _ => return Err(BuildError::Problem(complex_key(key_loc))),
            };
            let (event, value_loc) = self.next()?;
            let (value, value_size) = self.node(event, value_loc, depth + 1)?;
            size += value_size;
            if let Some((first, _)) = entries.iter().find(|(key, _)| key.name == name) {
                self.problems.push(
                    Problem::new(
                        key_loc,
                        format!(
                            "duplicate key `{name}` (first defined at line {}, column {})",
                            first.loc.line, first.loc.col
                        ),
                    )
                    .with_hint(
                        "each key may appear once in a mapping; remove or merge one of them",
                    ),
                );
                continue;
            }
            entries.push((Key { name, loc: key_loc }, value));
        }
        // For block mappings yaml-rust2 marks the start one column past the first key; the
        // first key is where a reader sees the mapping begin.
        let loc = entries.first().map_or(start, |(key, _)| key.loc.min(start));
        Ok((Node::new(NodeKind::Map(entries), loc), size))
    }
}

fn scalar(value: String, style: TScalarStyle, tag: Option<&Tag>) -> NodeKind {
    if style != TScalarStyle::Plain {
        return NodeKind::Str(value);
    }
    if let Some(tag) = tag {
        if tag.handle == "tag:yaml.org,2002:" && tag.suffix != "str" {
            return resolve_plain(&value);
        }
        return NodeKind::Str(value);
    }
    resolve_plain(&value)
}

/// YAML's core schema for untagged plain scalars, as yaml-rust2 resolves it.
fn resolve_plain(value: &str) -> NodeKind {
    match Yaml::from_str(value) {
        Yaml::Null => NodeKind::Null,
        Yaml::Boolean(b) => NodeKind::Bool(b),
        Yaml::Integer(i) => NodeKind::Int(i),
        Yaml::Real(text) => match parse_float(&text) {
            Some(f) => NodeKind::Float(f),
            None => NodeKind::Str(text),
        },
        _ => NodeKind::Str(value.to_owned()),
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

fn mark_loc(mark: &Marker) -> Loc {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Loc::new(mark.line().max(1), mark.col() + 1)
}

fn scan_problem(err: &ScanError) -> Problem {
    Problem::new(
        mark_loc(err.marker()),
        format!("YAML syntax error: {}", err.info()),
    )
}

fn unexpected(event: &Event, loc: Loc) -> BuildError {
    BuildError::Problem(Problem::new(
        loc,
        format!("YAML syntax error: unexpected {event:?}"),
    ))
}

fn complex_key(loc: Loc) -> Problem {
    Problem::new(
        loc,
        "mapping keys must be plain strings, not lists or mappings",
    )
}

#[cfg(test)]
mod tests;
