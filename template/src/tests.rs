//! Expectations are what Go's text/template + sprig print for the same template and data.

use serde_json::{Map, Value, json};

use super::{Dialect, Layout, Template};

/// A dialect like the exporter's for Kubernetes events (src/template.rs, which tests its own),
/// so the data below reads as it does there: ObjectMeta embedded, labels and annotations maps,
/// two aliases, and methods.
pub(crate) static K8S: Dialect = Dialect {
    aliases: &[
        ("ReportingController", "reportingComponent"),
        ("ObjectMeta", "metadata"),
    ],
    embedded: &["metadata"],
    maps: &["Labels", "Annotations"],
    methods: &[
        ("GetTimestampMs", first_timestamp_ms),
        ("GetTimestampISO8601", |o| {
            o.get("firstTimestamp").cloned().unwrap_or(Value::Null)
        }),
    ],
};

fn first_timestamp_ms(o: &Map<String, Value>) -> Value {
    o.get("firstTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map_or(Value::Null, |t| Value::from(t.as_millisecond()))
}

fn parse(src: &str) -> Result<Template, super::TemplateError> {
    Template::parse_with(src, &K8S)
}

fn event() -> Value {
    json!({
        "metadata": {"name": "coredns.1798", "namespace": "kube-system", "uid": "4c31", "resourceVersion": "42",
                     "creationTimestamp": "2023-11-17T19:37:03Z", "labels": {"team": "dns"}},
        "reason": "Killing", "message": "Stopping container coredns",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2023-11-17T19:37:03Z", "lastTimestamp": "2023-11-17T19:37:04Z",
        "count": 3, "type": "Warning", "eventTime": null,
        "reportingComponent": "kubelet", "reportingInstance": "node-1",
        "clusterName": "prod",
        "involvedObject": {"kind": "Pod", "namespace": "kube-system", "name": "coredns", "uid": "968c",
            "apiVersion": "v1", "fieldPath": "spec.containers{coredns}",
            "labels": {"app": "dns", "k8s-app": "kube-dns"}, "deleted": false}
    })
}

fn r(src: &str) -> String {
    match parse(src) {
        Ok(t) => t
            .render(&event())
            .unwrap_or_else(|e| panic!("render {src:?}: {e}")),
        Err(e) => panic!("parse {src:?}: {e}"),
    }
}

fn parse_err(src: &str) -> String {
    parse(src).expect_err(src).to_string()
}

fn render_err(src: &str) -> String {
    parse(src)
        .unwrap()
        .render(&event())
        .expect_err(src)
        .to_string()
}

#[test]
fn fields_and_go_names() {
    assert_eq!(
        r("{{ .Reason }}: {{ .Message }}"),
        "Killing: Stopping container coredns"
    );
    assert_eq!(
        r("{{.InvolvedObject.Kind}}/{{.InvolvedObject.Name}}"),
        "Pod/coredns"
    );
    assert_eq!(
        r(
            "{{ .InvolvedObject.APIVersion }} {{ .InvolvedObject.UID }} {{ .InvolvedObject.FieldPath }}"
        ),
        "v1 968c spec.containers{coredns}"
    );
    assert_eq!(r("{{ .InvolvedObject.Labels.app }}"), "dns");
    assert_eq!(
        r("{{ .Namespace }} {{ .Name }} {{ .UID }} {{ .ResourceVersion }}"),
        "kube-system coredns.1798 4c31 42"
    );
    assert_eq!(
        r("{{ .ObjectMeta.Name }} {{ .Labels.team }} {{ .CreationTimestamp }}"),
        "coredns.1798 dns 2023-11-17T19:37:03Z"
    );
    assert_eq!(
        r("{{ .Source.Component }}@{{ .Source.Host }} {{ .ClusterName }}"),
        "kubelet@node-1 prod"
    );
    assert_eq!(
        r("{{ .ReportingController }} {{ .ReportingInstance }} {{ .Count }}"),
        "kubelet node-1 3"
    );
    // camelCase keys work too.
    assert_eq!(r("{{ .involvedObject.kind }}"), "Pod");
    assert_eq!(
        r("{{ index .InvolvedObject.Labels \"k8s-app\" }}"),
        "kube-dns"
    );
}

#[test]
fn missing_is_no_value() {
    assert_eq!(r("{{ .Missing }}"), "<no value>");
    assert_eq!(r("@{{ .InvolvedObject.Labels.owner }}"), "@<no value>");
    assert_eq!(r("{{ .Missing.Deeper }}"), "<no value>");
    assert_eq!(r("{{ .EventTime }}"), "<no value>");
    // Map keys are case-sensitive.
    assert_eq!(r("{{ .InvolvedObject.Labels.App }}"), "<no value>");
    assert_eq!(
        render_err("{{ .Reason.Foo }}"),
        "line 1, column 4: can't evaluate field Foo in type string"
    );
}

#[test]
fn methods() {
    assert_eq!(r("{{ .GetTimestampMs }}"), "1700249823000");
    assert_eq!(
        r("{{ .GetTimestampISO8601 | trunc 4 }} {{ .Source.GetTimestampMs }}"),
        "2023 <no value>"
    );
    // A field of the name wins over the method.
    let data = json!({"GetTimestampMs": 1, "getTimestampMs": 2});
    let t = parse("{{ .GetTimestampMs }}").unwrap();
    assert_eq!(t.render(&data).unwrap(), "1");
}

/// Without a dialect: Go's name rule only. No promoted fields, no aliases, no methods, and a
/// name after `.Labels` is a field name like any other.
#[test]
fn plain_go_rules() {
    let r = |src: &str| Template::parse(src).unwrap().render(&event()).unwrap();
    assert_eq!(
        r("{{ .InvolvedObject.Kind }} {{ .Metadata.Namespace }} {{ .Reason }}"),
        "Pod kube-system Killing"
    );
    assert_eq!(
        r(
            "{{ .Namespace }} {{ .ObjectMeta.Name }} {{ .ReportingController }} {{ .GetTimestampMs }}"
        ),
        "<no value> <no value> <no value> <no value>"
    );
    assert_eq!(r("{{ .InvolvedObject.Labels.App }}"), "dns");
    assert_eq!(Template::parse("{{ .A }}"), Template::parse("{{ .A }}"));
    assert_ne!(Template::parse("{{ .A }}"), parse("{{ .A }}"));
    assert_eq!(
        Layout::compile(&json!({"ns": "{{ .Namespace }}"}))
            .unwrap()
            .render(&event())
            .unwrap(),
        json!({"ns": "<no value>"})
    );
}

#[test]
fn to_json_round_trips() {
    let out = r("{{ toJson . }}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), event());
    assert_eq!(
        r("{{ .InvolvedObject.Labels | toJson }}"),
        r#"{"app":"dns","k8s-app":"kube-dns"}"#
    );
    assert_eq!(
        r("{{ toPrettyJson .Source }}"),
        "{\n  \"component\": \"kubelet\",\n  \"host\": \"node-1\"\n}"
    );
}

#[test]
fn to_json_escapes_like_go() {
    let data = json!({"m": "a<b> & c"});
    let t = Template::parse("{{ toJson .m }}").unwrap();
    assert_eq!(t.render(&data).unwrap(), r#""a\u003cb\u003e \u0026 c""#);
}

#[test]
fn defaults_and_logic() {
    assert_eq!(r(r#"{{ default "x" .Missing }}"#), "x");
    assert_eq!(r(r#"{{ .Missing | default "x" }}"#), "x");
    assert_eq!(r(r#"{{ .Reason | default "x" }}"#), "Killing");
    assert_eq!(r(r#"{{ coalesce .Missing "" .Type }}"#), "Warning");
    assert_eq!(r(r#"{{ ternary "yes" "no" (eq .Type "Warning") }}"#), "yes");
    assert_eq!(
        r(r#"{{ empty .Missing }} {{ empty .Reason }}"#),
        "true false"
    );
    assert_eq!(
        r(r#"{{ if and (eq .Type "Warning") (gt .Count 1.0) }}alert{{ end }}"#),
        "alert"
    );
    assert_eq!(
        r(
            r#"{{ if or (eq .Type "Normal") (lt .Count 2) }}a{{ else if ge .Count 3 }}b{{ else }}c{{ end }}"#
        ),
        "b"
    );
    assert_eq!(r(r#"{{ if not .Missing }}absent{{ end }}"#), "absent");
    assert_eq!(
        r(r#"{{ eq .Reason "A" "Killing" }} {{ ne .Count 3 }} {{ le 2 2.5 }}"#),
        "true false true"
    );
    // `and` short-circuits: the index error is never reached.
    assert_eq!(r(r#"{{ and .Missing (index .Reason 99) }}"#), "<no value>");
    assert_eq!(r(r#"{{ or .Missing "fallback" }}"#), "fallback");
    assert_eq!(
        r(r#"{{ with .Source }}{{ .Host }}{{ end }}{{ with .Missing }}x{{ else }}none{{ end }}"#),
        "node-1none"
    );
}

#[test]
fn printf_like_go() {
    assert_eq!(r(r#"{{ printf "%05d" 3 }}"#), "00003");
    assert_eq!(r(r#"{{ printf "%-5d|" 3 }}"#), "3    |");
    assert_eq!(r(r#"{{ printf "%q" .Reason }}"#), "\"Killing\"");
    assert_eq!(
        r(r#"{{ printf "%s/%s x%d" .InvolvedObject.Kind .InvolvedObject.Name .Count }}"#),
        "Pod/coredns x3"
    );
    assert_eq!(
        r(r#"{{ printf "%x %X %f %.2f %t %v" 255 255 1.5 3.14159 true .Count }}"#),
        "ff FF 1.500000 3.14 true 3"
    );
    assert_eq!(r(r#"{{ printf "%d" "a" }}"#), "%!d(string=a)");
    assert_eq!(r(r#"{{ printf "%d %d" 1 }}"#), "1 %!d(MISSING)");
    assert_eq!(r(r#"{{ printf "%d" 1 2 }}"#), "1%!(EXTRA int=2)");
    assert_eq!(r(r#"{{ printf "%v %v" 1e6 2.5 }}"#), "1e+06 2.5");
    assert_eq!(r(r#"{{ .Count | printf "n=%d" }}"#), "n=3");
    assert_eq!(
        r(r#"{{ print 1 2 "a" 3 }}|{{ println "a" 1 }}"#),
        "1 2a3|a 1\n"
    );
    assert_eq!(
        r(r#"{{ len .InvolvedObject.Labels }} {{ len .Reason }} {{ len (list 1 2 3) }}"#),
        "2 7 3"
    );
}

#[test]
fn range_and_variables() {
    assert_eq!(
        r(r#"{{ range $k, $v := .InvolvedObject.Labels }}{{ $k }}={{ $v }};{{ end }}"#),
        "app=dns;k8s-app=kube-dns;"
    );
    assert_eq!(
        r(r#"{{ range $i, $x := list "a" "b" }}{{ $i }}{{ $x }}{{ end }}"#),
        "0a1b"
    );
    assert_eq!(
        r(r#"{{ range .Missing }}x{{ else }}empty{{ end }}"#),
        "empty"
    );
    assert_eq!(
        r(r#"{{ range .InvolvedObject.Labels }}{{ . }},{{ end }}"#),
        "dns,kube-dns,"
    );
    assert_eq!(
        r(r#"{{ $r := .Reason }}{{ range list 1 }}{{ $r }}{{ $.Type }}{{ end }}"#),
        "KillingWarning"
    );
    assert_eq!(
        r(r#"{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}"#),
        "2"
    );
    assert_eq!(
        r(r#"{{ (.Source).Host }} {{ (index .InvolvedObject "labels").app }}"#),
        "node-1 dns"
    );
}

#[test]
fn trimming_and_comments() {
    assert_eq!(r("a  {{- .Count -}}  b"), "a3b");
    assert_eq!(r("a {{- /* note */ -}} b"), "ab");
    assert_eq!(r("a{{/* note */}}b"), "ab");
    assert_eq!(r("{{ if true }}\n  x\n{{- end }}"), "\n  x");
    assert_eq!(r("{{-3}}"), "-3");
}

#[test]
fn sprig_strings() {
    assert_eq!(
        r(r#"{{ upper .Reason }} {{ lower .Type }} {{ title "hello wide world" }}"#),
        "KILLING warning Hello Wide World"
    );
    assert_eq!(
        r(r#"{{ trim "  x  " }}|{{ trimPrefix "Kil" .Reason }}|{{ trimSuffix "ing" .Reason }}"#),
        "x|ling|Kill"
    );
    assert_eq!(
        r(r#"{{ replace "container" "ctr" .Message }}"#),
        "Stopping ctr coredns"
    );
    assert_eq!(
        r(
            r#"{{ contains "dns" .Message }} {{ hasPrefix "Stop" .Message }} {{ hasSuffix "x" .Message }}"#
        ),
        "true true false"
    );
    assert_eq!(
        r(r#"{{ quote .Reason 1 }} {{ squote .Reason }}"#),
        r#""Killing" "1" 'Killing'"#
    );
    assert_eq!(
        r(r#"{{ join "," (list "a" "b" 3) }} {{ splitList "." "a.b.c" | join "-" }}"#),
        "a,b,3 a-b-c"
    );
    assert_eq!(r(r#"{{ (split "." "a.b")._1 }}"#), "b");
    assert_eq!(
        r(r#"{{ trunc 4 .Reason }} {{ trunc -3 .Reason }} {{ abbrev 6 .Message }}"#),
        "Kill ing Sto..."
    );
    assert_eq!(
        r(r#"{{ repeat 3 "ab" }} {{ substr 1 4 .Reason }} {{ nospace "a b c" }}"#),
        "ababab ill abc"
    );
    assert_eq!(
        r(r#"{{ indent 2 "a\nb" }}|{{ nindent 2 "a" }}"#),
        "  a\n  b|\n  a"
    );
    assert_eq!(
        r(r#"{{ b64enc "hello" }} {{ b64dec "aGVsbG8=" }}"#),
        "aGVsbG8= hello"
    );
    assert_eq!(
        r(r#"{{ sha256sum "abc" }}"#),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        r(r#"{{ toString .Count }} {{ toString .Source }}"#),
        "3 map[component:kubelet host:node-1]"
    );
}

#[test]
fn sprig_numbers_and_collections() {
    assert_eq!(
        r(r#"{{ add 1 2 3 }} {{ sub 5 2 }} {{ mul 2 .Count }} {{ div 7 2 }} {{ mod 7 2 }}"#),
        "6 3 6 3 1"
    );
    assert_eq!(
        r(r#"{{ int "42" }} {{ float64 "1.5" }} {{ add 1.9 1 }}"#),
        "42 1.5 2"
    );
    assert_eq!(
        r(
            r#"{{ $d := dict "a" 1 "b" "x" }}{{ get $d "b" }} {{ hasKey $d "a" }} {{ keys $d | join "," }}"#
        ),
        "x true a,b"
    );
    assert_eq!(
        r(r#"{{ toJson (dict "kind" .InvolvedObject.Kind "n" .Count) }}"#),
        r#"{"kind":"Pod","n":3}"#
    );
    assert_eq!(
        render_err(r#"{{ div 1 0 }}"#),
        "line 1, column 4: error calling div: integer divide by zero"
    );
}

#[test]
fn dates() {
    assert_eq!(r(r#"{{ date "2006-01-02" .LastTimestamp }}"#), "2023-11-17");
    assert_eq!(
        r(r#"{{ .LastTimestamp | date "Jan _2 15:04:05 MST 2006" }}"#),
        "Nov 17 19:37:04 UTC 2023"
    );
    assert_eq!(
        r(r#"{{ date "2006-01-02T15:04:05Z07:00" 0 }}"#),
        "1970-01-01T00:00:00Z"
    );
    assert_eq!(
        r(r#"{{ date "Monday 3:04PM .000" .FirstTimestamp }}"#),
        "Friday 7:37PM .000"
    );
    // Needs the system tz database; skipped where there is none (minimal CI images).
    if jiff::tz::TimeZone::get("Europe/Paris").is_ok() {
        assert_eq!(
            r(r#"{{ dateInZone "15:04 -07:00 MST" .FirstTimestamp "Europe/Paris" }}"#),
            "20:37 +01:00 CET"
        );
    }
    assert_eq!(r(r#"{{ unixEpoch .FirstTimestamp }}"#), "1700249823");
    assert_eq!(
        r(r#"{{ toDate "2006-01-02" "2024-02-29" | date "02/01/06" }}"#),
        "29/02/24"
    );
    assert_eq!(r(r#"{{ now | date "2006" | len }}"#), "4");
}

#[test]
fn env_is_not_available() {
    // sprig's env/expandenv would let a layout read the exporter's secrets.
    assert_eq!(
        parse_err(r#"{{ env "HOME" }}"#),
        "line 1, column 4: function \"env\" not defined"
    );
    assert_eq!(
        parse_err(r#"{{ expandenv "$HOME" }}"#),
        "line 1, column 4: function \"expandenv\" not defined"
    );
    assert!(!super::function_names().contains(&"env"));
}

#[test]
fn parse_errors_have_positions() {
    assert_eq!(
        parse_err("ok {{ nosuch .X }}"),
        "line 1, column 7: function \"nosuch\" not defined"
    );
    assert_eq!(
        parse_err("a\n{{ if .X }}"),
        "line 2, column 1: unexpected EOF: {{if}} without {{end}}"
    );
    assert_eq!(parse_err("{{ .X "), "line 1, column 1: unclosed action");
    assert_eq!(
        parse_err("{{ end }}"),
        "line 1, column 10: unexpected {{end}}"
    );
    assert_eq!(
        parse_err(r#"{{ "a }}"#),
        "line 1, column 4: unterminated quoted string"
    );
    assert_eq!(
        parse_err("{{ .X | 3 }}"),
        "line 1, column 9: non-function in pipeline stage"
    );
    assert_eq!(
        parse_err("{{ }}"),
        "line 1, column 1: missing value for command"
    );
    assert!(parse_err("{{ define \"x\" }}{{ end }}").contains("not supported"));
    assert_eq!(
        render_err(r#"{{ printf }}"#),
        "line 1, column 4: wrong number of args for printf: want at least 1 got 0"
    );
    assert_eq!(
        parse_err(r#"{{ $nope }}"#),
        "line 1, column 4: undefined variable \"$nope\""
    );
    assert_eq!(
        parse_err(r#"{{ if 1 }}{{ $x := 1 }}{{ end }}{{ $x }}"#),
        "line 1, column 36: undefined variable \"$x\""
    );
    assert_eq!(
        parse_err(r#"{{ $x = 1 }}"#),
        "line 1, column 1: undefined variable \"$x\""
    );
    assert_eq!(
        parse_err(r#"{{ $a, $b := 1 }}"#),
        "line 1, column 4: undefined variable \"$a\""
    );
    assert_eq!(
        render_err(r#"{{ repeat 100000000 "ab" }}"#),
        "line 1, column 4: error calling repeat: result too large"
    );
}

#[test]
fn nasty_inputs_do_not_panic() {
    let inputs = [
        "{{",
        "}}",
        "{{-",
        "{{- -}}",
        "{{/*",
        "{{/* */",
        "{{ ( }}",
        "{{ ) }}",
        "{{ ((((( }}",
        "{{ \"\\",
        "{{ `",
        "{{ $ }}",
        "{{ $x := }}",
        "{{ , }}",
        "{{ := }}",
        "{{ . . }}",
        "{{ .A.B.C.D }}",
        "{{ 0x }}",
        "{{ 1e999 }}",
        "{{ 'a }}",
        "{{ 'ab' }}",
        "{{ else }}",
        "{{ if }}{{ end }}",
        "{{ range $a, $b, $c := . }}{{ end }}",
        "{{ printf \"%\" }}",
        "{{ printf \"%.\" 1 }}",
        "{{ printf \"%99999999999d\" 1 }}",
        "{{ index . 1 }}",
        "{{ index .Reason -1 }}",
        "{{ substr 5 2 \"é\" }}",
        "{{ trunc 1 \"é\" }}",
        "{{ slice }}",
        "€{{ .Reason }}€",
        "{{ range 3 }}{{ . }}{{ end }}",
        "{{ len 3 }}",
        "{{ repeat -1 \"a\" }}",
        "{{ .Count.X }}",
        "{{ (1).X }}",
        "{{ with $x := 1 }}{{ $x }}{{ end }}",
        "{{- /* a */ -}}",
        "{{/* a */ }}",
        "{{ \"\\u12\" }}",
        "{{ -.5 }}",
        "{{ toDate \"x\" \"y\" }}",
        "{{ dateInZone \"2006\" 0 \"Nowhere/City\" }}",
        "{{ date 1 2 }}",
    ];
    for src in inputs {
        if let Ok(t) = parse(src) {
            let _ = t.render(&event());
            let _ = t.render(&Value::Null);
            let _ = t.render(&json!([1, "x"]));
        }
    }
    // Every prefix of a complex template.
    let src = r#"{{- range $k, $v := .InvolvedObject.Labels -}} {{ printf "%q=%05d" $k (len $v) | upper }} {{ else }}{{ "x" }}{{ end }}"#;
    for i in 0..=src.len() {
        if let Ok(t) = parse(&src[..i]) {
            let _ = t.render(&event());
        }
    }
    // Deep nesting is rejected, not a stack overflow.
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(Template::parse(&deep).is_err());
    let deep_if = "{{ if 1 }}".repeat(10_000);
    assert!(Template::parse(&deep_if).is_err());
}

/// A small deterministic fuzzer: random sequences of template fragments never panic.
#[test]
fn random_fragments_do_not_panic() {
    const FRAGS: &[&str] = &[
        "{{",
        "}}",
        "{{-",
        " -}}",
        " ",
        ".",
        ".Reason",
        ".InvolvedObject",
        ".Labels",
        "$",
        "$x",
        ":=",
        "=",
        ",",
        "(",
        ")",
        "|",
        "\"",
        "\"s\"",
        "`",
        "1",
        "-2",
        "3.5",
        "'a'",
        "if",
        "else",
        "end",
        "range",
        "with",
        "nil",
        "true",
        "printf",
        "\"%05d\"",
        "len",
        "index",
        "and",
        "or",
        "not",
        "eq",
        "default",
        "toJson",
        "date",
        "/*",
        "*/",
        "\n",
        "é",
        "upper",
        "split",
        "dict",
        "list",
        "substr",
        "trunc",
    ];
    let data = event();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let n = (next() % 16) as usize;
        let src: String = (0..n)
            .map(|_| FRAGS[(next() % FRAGS.len() as u64) as usize])
            .collect();
        if let Ok(t) = parse(&src) {
            let _ = t.render(&data);
        }
    }
}

#[test]
fn layout_keeps_types_and_nests() {
    let layout = json!({
        "summary": "{{ .Reason }} on {{ .InvolvedObject.Kind }}",
        "count": 1,
        "critical": true,
        "none": null,
        "plain": "static text",
        "details": {"ns": "{{ .Namespace }}", "labels": "{{ toJson .InvolvedObject.Labels }}"},
        "tags": ["{{ .Type }}", 2],
    });
    let l = Layout::compile_with(&layout, &K8S).unwrap();
    assert_eq!(
        l.render(&event()).unwrap(),
        json!({
            "summary": "Killing on Pod", "count": 1, "critical": true, "none": null, "plain": "static text",
            "details": {"ns": "kube-system", "labels": "{\"app\":\"dns\",\"k8s-app\":\"kube-dns\"}"},
            "tags": ["Warning", 2],
        })
    );
    let bad = json!({"details": {"msg": "{{ nope }}"}, "list": [1, "{{ .X "]});
    let err = Layout::compile(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "details.msg: line 1, column 4: function \"nope\" not defined"
    );
    let err = Layout::compile(&json!({"list": [1, "{{ .X "]})).unwrap_err();
    assert_eq!(err.path, "list[1]");
    let l = Layout::compile(&json!({"a": [{"b": "{{ .Reason.X }}"}]})).unwrap();
    assert_eq!(l.render(&event()).unwrap_err().path, "a[0].b");
}

#[test]
fn send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Template>();
    check::<Layout>();
}

#[test]
#[ignore = "timing probe"]
fn timing_probe() {
    let l = Layout::compile_with(
        &json!({
        "title": "{{ .Reason }} on {{ .InvolvedObject.Kind }} {{ .InvolvedObject.Name }}",
        "text": "{{ .Message }}",
        "severity": "{{ if eq .Type \"Warning\" }}high{{ else }}low{{ end }}",
        "labels": "{{ range $k, $v := .InvolvedObject.Labels }}{{ $k }}={{ $v }} {{ end }}",
        "at": "{{ .GetTimestampMs }}", "n": 1,
        }),
        &K8S,
    )
    .unwrap();
    let data = event();
    let t = std::time::Instant::now();
    for _ in 0..100_000 {
        std::hint::black_box(l.render(&data).unwrap());
    }
    eprintln!("{:?} per render", t.elapsed() / 100_000);
    for src in [
        "{{ .Reason }} on {{ .InvolvedObject.Kind }} {{ .InvolvedObject.Name }}",
        "{{ .GetTimestampMs }}",
        "{{ range $k, $v := .InvolvedObject.Labels }}{{ $k }}={{ $v }} {{ end }}",
        "{{ if eq .Type \"Warning\" }}high{{ else }}low{{ end }}",
    ] {
        let tp = parse(src).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..100_000 {
            std::hint::black_box(tp.render(&data).unwrap());
        }
        eprintln!("{:?} {src}", t.elapsed() / 100_000);
    }
}
