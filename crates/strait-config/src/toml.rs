//! TOML text to a located [`Node`] tree, through toml_edit's spans (byte ranges into the text).

use toml_edit::{Document, Item, TableLike, Value};

use crate::tree::{Key, Loc, Node, NodeKind};
use crate::Problem;

/// toml_edit bounds nesting itself; this guards our own recursion all the same.
const MAX_DEPTH: usize = 64;

/// Parses a TOML document. TOML rejects duplicate keys as a syntax error, so there is either a
/// tree or one problem.
pub(crate) fn parse(text: &str) -> (Option<Node>, Vec<Problem>) {
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(err) => {
            let loc = err
                .span()
                .map_or(Loc::START, |span| Loc::from_offset(text, span.start));
            let message = format!("TOML syntax error: {}", err.message().trim_end());
            return (None, vec![Problem::new(loc, message)]);
        }
    };
    let converter = Converter { text };
    match converter.table(doc.as_table(), Loc::START, 0) {
        Ok(node) => (Some(node), Vec::new()),
        Err(problem) => (None, vec![problem]),
    }
}

struct Converter<'a> {
    text: &'a str,
}

// === impl Converter ===

impl Converter<'_> {
    fn loc(&self, span: Option<std::ops::Range<usize>>, fallback: Loc) -> Loc {
        span.map_or(fallback, |span| Loc::from_offset(self.text, span.start))
    }

    fn table(&self, table: &dyn TableLike, loc: Loc, depth: usize) -> Result<Node, Problem> {
        if depth > MAX_DEPTH {
            return Err(too_deep(loc));
        }
        let mut entries = Vec::new();
        for (name, item) in table.iter() {
            let key_loc = self.loc(table.key(name).and_then(|key| key.span()), loc);
            let value = self.item(item, key_loc, depth + 1)?;
            entries.push((
                Key {
                    name: name.to_owned(),
                    loc: key_loc,
                },
                value,
            ));
        }
        Ok(Node::new(NodeKind::Map(entries), loc))
    }

    /// `key_loc` stands in where toml_edit has no span, e.g. for tables that only exist
    /// because a dotted key or header implies them.
    fn item(&self, item: &Item, key_loc: Loc, depth: usize) -> Result<Node, Problem> {
        let loc = self.loc(item.span(), key_loc);
        match item {
            Item::None => Ok(Node::new(NodeKind::Null, loc)),
            Item::Value(value) => self.value(value, key_loc, depth),
            Item::Table(table) => self.table(table, loc, depth),
            Item::ArrayOfTables(tables) => {
                let mut items = Vec::new();
                for table in tables.iter() {
                    let table_loc = self.loc(table.span(), loc);
                    items.push(self.table(table, table_loc, depth + 1)?);
                }
                Ok(Node::new(NodeKind::Seq(items), loc))
            }
        }
    }

    fn value(&self, value: &Value, key_loc: Loc, depth: usize) -> Result<Node, Problem> {
        let loc = self.loc(value.span(), key_loc);
        if depth > MAX_DEPTH {
            return Err(too_deep(loc));
        }
        let kind = match value {
            Value::String(s) => NodeKind::Str(s.value().clone()),
            Value::Integer(i) => NodeKind::Int(*i.value()),
            Value::Float(f) => NodeKind::Float(*f.value()),
            Value::Boolean(b) => NodeKind::Bool(*b.value()),
            // No setting takes a date; as a string it gets the ordinary "expected ..." error.
            Value::Datetime(d) => NodeKind::Str(d.value().to_string()),
            Value::Array(array) => {
                let mut items = Vec::new();
                for item in array.iter() {
                    items.push(self.value(item, loc, depth + 1)?);
                }
                NodeKind::Seq(items)
            }
            Value::InlineTable(table) => return self.table(table, loc, depth + 1),
        };
        Ok(Node::new(kind, loc))
    }
}

fn too_deep(loc: Loc) -> Problem {
    Problem::new(loc, format!("nesting is deeper than {MAX_DEPTH} levels"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        let (node, problems) = parse(text);
        assert!(problems.is_empty(), "{problems:?}");
        node.unwrap()
    }

    fn entries(node: &Node) -> &[(Key, Node)] {
        match &node.kind {
            NodeKind::Map(entries) => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn keys_and_values_are_located() {
        let root = tree("[a]\nb = 1\nc = { d = \"x\" }\n\n[[e]]\nf = [2, 3]\n");
        let top = entries(&root);
        assert_eq!(top[0].0.name, "a");
        assert_eq!(top[0].0.loc, Loc::new(1, 2));
        assert_eq!(top[0].1.loc, Loc::new(1, 1));
        let a = entries(&top[0].1);
        assert_eq!(a[0].0.loc, Loc::new(2, 1));
        assert_eq!(a[0].1, Node::new(NodeKind::Int(1), Loc::new(2, 5)));
        assert_eq!(a[1].1.loc, Loc::new(3, 5));
        let d = &entries(&a[1].1)[0];
        assert_eq!(d.0.loc, Loc::new(3, 7));
        assert_eq!(d.1, Node::new(NodeKind::Str("x".into()), Loc::new(3, 11)));
        let NodeKind::Seq(tables) = &top[1].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(tables[0].loc, Loc::new(5, 1));
        let f = &entries(&tables[0])[0];
        assert_eq!(f.0.loc, Loc::new(6, 1));
        let NodeKind::Seq(items) = &f.1.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[1], Node::new(NodeKind::Int(3), Loc::new(6, 9)));
    }

    #[test]
    fn implied_tables_are_located_at_their_key() {
        let root = tree("[x.y]\nz = true\n");
        let x = &entries(&root)[0];
        assert_eq!(x.0.loc, Loc::new(1, 2));
        assert_eq!(x.1.loc, Loc::new(1, 2));
        let y = &entries(&x.1)[0];
        assert_eq!(y.0.loc, Loc::new(1, 4));
        assert_eq!(entries(&y.1)[0].1.kind, NodeKind::Bool(true));
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let (node, problems) = parse("a = 1\na = 2\n");
        assert!(node.is_none());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].loc, Loc::new(2, 1));
        assert_eq!(problems[0].message, "TOML syntax error: duplicate key");
    }

    #[test]
    fn empty_text_is_an_empty_table() {
        assert_eq!(tree("").kind, NodeKind::Map(Vec::new()));
    }
}
