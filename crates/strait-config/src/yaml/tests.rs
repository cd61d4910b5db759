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
    let root = tree("a:\n  b: 1\n  c: [x, {y: true}]\nd: \"q\"\n");
    assert_eq!(root.loc, Loc::new(1, 1));
    let top = entries(&root);
    assert_eq!(top[0].0.loc, Loc::new(1, 1));
    let inner = entries(&top[0].1);
    assert_eq!(inner[0].0.name, "b");
    assert_eq!(inner[0].0.loc, Loc::new(2, 3));
    assert_eq!(inner[0].1, Node::new(NodeKind::Int(1), Loc::new(2, 6)));
    let NodeKind::Seq(items) = &inner[1].1.kind else {
        panic!("not a seq")
    };
    assert_eq!(inner[1].1.loc, Loc::new(3, 6));
    assert_eq!(
        items[0],
        Node::new(NodeKind::Str("x".into()), Loc::new(3, 7))
    );
    assert_eq!(items[1].loc, Loc::new(3, 10));
    assert_eq!(entries(&items[1])[0].1.kind, NodeKind::Bool(true));
    assert_eq!(
        top[1].1,
        Node::new(NodeKind::Str("q".into()), Loc::new(4, 4))
    );
}

#[test]
fn scalars_follow_the_core_schema() {
    let root = tree("a: ~\nb: '1'\nc: 1.5\nd: !!str 7\ne:\nf: 0x10\n");
    let kinds: Vec<_> = entries(&root).iter().map(|(_, n)| n.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            NodeKind::Null,
            NodeKind::Str("1".into()),
            NodeKind::Float(1.5),
            NodeKind::Str("7".into()),
            NodeKind::Null,
            NodeKind::Int(16),
        ]
    );
}

#[test]
fn empty_text_is_null() {
    assert_eq!(tree("").kind, NodeKind::Null);
    assert_eq!(tree("# only a comment\n").kind, NodeKind::Null);
}

#[test]
fn aliases_copy_the_anchored_node() {
    let root = tree("a: &m {x: 1}\nb: *m\n");
    let top = entries(&root);
    assert_eq!(entries(&top[1].1)[0].1.kind, NodeKind::Int(1));
    assert_eq!(top[1].1.loc, Loc::new(2, 4));
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let (node, problems) = parse(&text);
    assert!(node.is_none());
    assert!(
        problems[0].message.contains("expands to more than"),
        "{problems:?}"
    );
}

#[test]
fn deep_nesting_is_refused() {
    let text = "[".repeat(200) + &"]".repeat(200);
    let (node, problems) = parse(&text);
    assert!(node.is_none());
    assert!(problems[0].message.contains("nesting"), "{problems:?}");
}

#[test]
fn duplicate_keys_keep_the_first() {
    let (node, problems) = parse("a: 1\nb: 2\na: 3\n");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].loc, Loc::new(3, 1));
    assert!(problems[0].message.contains("duplicate key `a`"));
    let root = node.unwrap();
    assert_eq!(entries(&root).len(), 2);
    assert_eq!(entries(&root)[0].1.kind, NodeKind::Int(1));
}

#[test]
fn a_second_document_is_reported() {
    let (_, problems) = parse("a: 1\n---\nb: 2\n");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].loc, Loc::new(2, 1));
}

#[test]
fn syntax_errors_have_a_location() {
    let (node, problems) = parse("a:\n  b: 1\n c: 2\n");
    assert!(node.is_none());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].loc, Loc::new(3, 3));
    assert!(problems[0].message.starts_with("YAML syntax error"));
}
