//! No spec value can inject a Dockerfile instruction: the rendered file is
//! parsed back line by line and must hold exactly the expected instructions,
//! with every value intact.

use std::collections::BTreeMap;

use cameleer_build::{DockerfileSpec, ImageRef};
use proptest::prelude::*;

fn spec() -> DockerfileSpec {
    DockerfileSpec::new("eclipse-temurin:17-jre".parse::<ImageRef>().unwrap())
}

/// The instructions of a Dockerfile, as Docker's parser splits them: one
/// per line (no line of ours ends with the `\` continuation), comments and
/// blank lines skipped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    assert!(dockerfile.ends_with('\n'));
    dockerfile
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            assert!(!l.ends_with('\\'), "line continues: {l:?}");
            let (word, rest) = l.split_once(' ').unwrap_or((l, ""));
            (word.to_ascii_uppercase(), rest.to_owned())
        })
        .collect()
}

/// Undoes our LABEL quoting the way Docker's word lexer reads a
/// double-quoted word: `\"`, `\\` and `\$` stand for the character.
fn unquote_word(s: &str) -> (String, &str) {
    let mut chars = s.char_indices();
    assert_eq!(chars.next().map(|c| c.1), Some('"'), "{s:?}");
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &s[i + 1..]),
            '\\' => {
                let (_, next) = chars.next().expect("escape at end");
                assert!(
                    matches!(next, '"' | '\\' | '$'),
                    "unexpected escape \\{next}"
                );
                out.push(next);
            }
            '$' => panic!("unescaped $ would be expanded: {s:?}"),
            c => out.push(c),
        }
    }
    panic!("unterminated word {s:?}")
}

/// Checks the rendered file against the spec: the exact instruction list,
/// labels and the entrypoint's argv read back unchanged.
fn assert_faithful(spec: &DockerfileSpec, rendered: &str) {
    let ins = instructions(rendered);
    let mut expected = vec!["FROM".to_owned()];
    expected.extend(spec.labels.iter().map(|_| "LABEL".to_owned()));
    expected.extend(["WORKDIR", "COPY", "COPY", "USER", "ENTRYPOINT"].map(String::from));
    let words: Vec<&String> = ins.iter().map(|(w, _)| w).collect();
    assert_eq!(words, expected.iter().collect::<Vec<_>>(), "{rendered}");

    let labels: BTreeMap<String, String> = ins
        .iter()
        .filter(|(w, _)| w == "LABEL")
        .map(|(_, rest)| {
            let (k, after) = unquote_word(rest);
            let (v, tail) = unquote_word(after.strip_prefix('=').expect("="));
            assert!(tail.is_empty(), "one label per line: {rest:?}");
            (k, v)
        })
        .collect();
    assert_eq!(labels, spec.labels);

    let entry = &ins.last().unwrap().1;
    let argv: Vec<String> = serde_json::from_str(entry).expect("exec form is a JSON array");
    assert_eq!(argv, spec.command().unwrap());
    assert_eq!(ins[0].1, spec.base_image.to_string());
}

#[test]
fn renders_the_expected_file() {
    let mut s = spec();
    s.agent_args = Some("tenant=acme,env=prod".into());
    s.jvm_options = vec!["-Xss512k".into()];
    s.app_args = vec!["--server.port=8080".into()];
    s.labels.insert("io.cameleer.app".into(), "orders".into());
    let text = s.render().unwrap();
    assert_eq!(
        text,
        r#"FROM eclipse-temurin:17-jre
LABEL "io.cameleer.app"="orders"
WORKDIR /app
COPY --chown=0:0 ["cameleer-agent.jar","/opt/cameleer/cameleer-agent.jar"]
COPY --chown=0:0 ["app.jar","/app/app.jar"]
USER 10001:10001
ENTRYPOINT ["java","-javaagent:/opt/cameleer/cameleer-agent.jar=tenant=acme,env=prod","-XX:MaxRAMPercentage=75.0","-XX:+ExitOnOutOfMemoryError","-Xss512k","-jar","/app/app.jar","--server.port=8080"]
"#
    );
    assert_faithful(&s, &text);
}

#[test]
fn adversarial_values_stay_values() {
    let mut s = spec();
    s.agent_args = Some(r#"a"],"RUN","rm -rf /"#.into());
    s.jvm_options = vec![r#"-Dx="] RUN evil \"#.into(), "$HOME ${PATH} `id`".into()];
    s.app_args = vec![
        "\\".into(),
        "\"".into(),
        "']".into(),
        "\u{2028}RUN x".into(),
    ];
    s.labels
        .insert(r#"k" RUN="x"#.into(), "$(whoami) ${X:-y} \\$".into());
    let text = s.render().unwrap();
    assert_faithful(&s, &text);
}

#[test]
fn refuses_control_characters_and_bad_paths_naming_the_field() {
    type Edit = Box<dyn Fn(&mut DockerfileSpec)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|s| s.jvm_options = vec!["ok".into(), "-Da=1\nRUN evil".into()]),
            "jvm_options[1]",
        ),
        (Box::new(|s| s.app_args = vec!["\r".into()]), "app_args[0]"),
        (
            Box::new(|s| s.agent_args = Some("x\u{0}".into())),
            "agent_args",
        ),
        (
            Box::new(|s| drop(s.labels.insert("team".into(), "a\u{85}b".into()))),
            "labels[\"team\"]",
        ),
        (
            Box::new(|s| drop(s.labels.insert("".into(), "v".into()))),
            "labels",
        ),
        (Box::new(|s| s.jar_path = "app.jar".into()), "jar_path"),
        (
            Box::new(|s| s.agent_path = "/opt/../etc/passwd".into()),
            "agent_path",
        ),
        (Box::new(|s| s.workdir = "/app dir".into()), "workdir"),
        (Box::new(|s| s.workdir = "/$HOME".into()), "workdir"),
        (Box::new(|s| s.jar_path = s.agent_path.clone()), "jar_path"),
        (
            Box::new(|s| s.max_ram_percentage = f64::NAN),
            "max_ram_percentage",
        ),
        (
            Box::new(|s| s.max_ram_percentage = 150.0),
            "max_ram_percentage",
        ),
    ];
    for (edit, field) in cases {
        let mut s = spec();
        edit(&mut s);
        let e = s.render().unwrap_err();
        assert_eq!(e.code(), "invalid_dockerfile_spec");
        assert_eq!(e.field, field, "{e}");
    }
}

#[test]
fn heap_share_is_configurable() {
    let mut s = spec();
    s.max_ram_percentage = 50.0;
    assert!(
        s.command()
            .unwrap()
            .contains(&"-XX:MaxRAMPercentage=50.0".to_owned())
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any values: either refused (exactly when one holds a control
    /// character) or rendered with the instruction set unchanged.
    #[test]
    fn no_value_injects_an_instruction(
        agent_args in proptest::option::of(any::<String>()),
        jvm in proptest::collection::vec(any::<String>(), 0..4),
        args in proptest::collection::vec("(\\PC|[\n\r\"\\\\$\\]\\[])*", 0..4),
        labels in proptest::collection::btree_map("[a-z.]{1,12}", any::<String>(), 0..4),
    ) {
        let mut s = spec();
        s.agent_args = agent_args;
        s.jvm_options = jvm;
        s.app_args = args;
        s.labels = labels;
        let has_control = s.agent_args.iter().chain(&s.jvm_options).chain(&s.app_args)
            .chain(s.labels.values())
            .any(|v| v.chars().any(char::is_control));
        match s.render() {
            Ok(text) => {
                prop_assert!(!has_control);
                assert_faithful(&s, &text);
            }
            Err(e) => {
                prop_assert!(has_control, "refused without cause: {e}");
            }
        }
    }
}
