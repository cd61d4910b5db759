//! The located document tree that both YAML and TOML are parsed into, so that validation is
//! written once and every error can point at the line and column it is about.

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Loc {
    pub(crate) line: usize,
    pub(crate) col: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NodeKind {
    Map(Vec<(Key, Node)>),
    Seq(Vec<Node>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Key {
    pub(crate) name: String,
    pub(crate) loc: Loc,
}

// === impl Loc ===

impl Loc {
    pub(crate) const START: Loc = Loc { line: 1, col: 1 };

    pub(crate) fn new(line: usize, col: usize) -> Loc {
        Loc { line, col }
    }

    /// Converts a byte offset into `text` to a line and column. Offsets past the end or inside
    /// a multi-byte character are clamped, since they only ever come from parser spans.
    pub(crate) fn from_offset(text: &str, offset: usize) -> Loc {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Loc { line, col }
    }
}

// === impl Node ===

impl Node {
    pub(crate) fn new(kind: NodeKind, loc: Loc) -> Node {
        Node { kind, loc }
    }

    /// How the node is called in "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> &'static str {
        match self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a list",
            NodeKind::Str(_) => "a string",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Null => "an empty value",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_char_columns() {
        let text = "ab\nçd\n";
        assert_eq!(Loc::from_offset(text, 0), Loc::new(1, 1));
        assert_eq!(Loc::from_offset(text, 2), Loc::new(1, 3));
        assert_eq!(Loc::from_offset(text, 3), Loc::new(2, 1));
        // `ç` is two bytes: `d` is at byte 5 but column 2.
        assert_eq!(Loc::from_offset(text, 5), Loc::new(2, 2));
        assert_eq!(Loc::from_offset(text, 4), Loc::new(2, 1));
        assert_eq!(Loc::from_offset(text, 99), Loc::new(3, 1));
    }
}
