//! Random chat templates, built from the constructs real templates use
//! (loops over messages and ranges, macros that call themselves, filters,
//! conditions, `namespace` counters), nested at random: each must load or
//! be refused, and render or fail, within its time budget, never hang,
//! overflow the stack or panic. Seeded, so a failure names its case.
//!
//! The generator does not double strings in a loop: that grows memory
//! before any bound of the renderer can see it (see `lucid_engine::chat`).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use lucid_engine::{ChatMessage, ChatTemplate, Role};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const EXPRS: &[&str] = &[
    "message['content']",
    "message.role",
    "messages|length",
    "bos_token",
    "'x' * 1000",
    "message['content']|upper|trim",
    "range(10)|list|join(',')",
    "messages[0]['content'][:5]",
    "message['content'].startswith('H')",
    "ns.n",
    "undefined_name",
    "message['content']|tojson",
    "(message['content'] ~ '!')|replace('!', '?')",
];

fn body(rng: &mut Rng, depth: usize) -> String {
    let mut out = String::new();
    for _ in 0..1 + rng.below(3) {
        let leaf = depth == 0 || rng.below(3) == 0;
        if leaf {
            out.push_str(&format!("{{{{ {} }}}}", EXPRS[rng.below(EXPRS.len())]));
            continue;
        }
        let inner = body(rng, depth - 1);
        out.push_str(&match rng.below(7) {
            0 => format!("{{% for message in messages %}}{inner}{{% endfor %}}"),
            1 => format!(
                "{{% for i in range({}) %}}{inner}{{% endfor %}}",
                [3, 100, 10_000][rng.below(3)]
            ),
            2 => format!("{{% if message is defined %}}{inner}{{% else %}}-{{% endif %}}"),
            3 => format!("{{% set ns.n = ns.n + 1 %}}{inner}"),
            4 => format!(
                "{{% macro m(k) %}}{{% if k > 0 %}}{{{{ m(k - 1) }}}}{{{{ m(k - 1) }}}}{{% endif %}}{inner}{{% endmacro %}}{{{{ m({}) }}}}",
                rng.below(30)
            ),
            5 => format!("{{% if messages|length > 2 %}}{{{{ raise_exception('too many') }}}}{{% endif %}}{inner}"),
            _ => format!("{{% for message in messages %}}{{% for c in message['content'] %}}{inner}{{% endfor %}}{{% endfor %}}"),
        });
    }
    out
}

#[test]
fn random_templates_load_and_render_in_bounded_time() {
    let budget = Duration::from_secs(15);
    let start = Instant::now();
    let (mut loaded, mut refused, mut rendered, mut failed) = (0, 0, 0, 0);
    let long = "word ".repeat(2_000);
    let conversation = [
        ChatMessage::new(Role::System, "Be brief."),
        ChatMessage::new(Role::User, long.as_str()),
    ];
    let mut case = 0u64;
    while start.elapsed() < budget && case < 2_000 {
        let mut rng = Rng(case);
        let source = format!("{{% set ns = namespace(n=0) %}}{}", body(&mut rng, 4));
        let t = Instant::now();
        let template = ChatTemplate::new(Some(&source), "<s>", "</s>");
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "case {case} loaded in {took:?}: {source}"
        );
        let Ok(template) = template else {
            refused += 1;
            case += 1;
            continue;
        };
        loaded += 1;
        let t = Instant::now();
        match template.render(&conversation, true) {
            Ok(_) => rendered += 1,
            Err(_) => failed += 1,
        }
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "case {case} rendered in {took:?}: {source}"
        );
        case += 1;
    }
    eprintln!(
        "{case} random templates in {:?}: {loaded} loaded ({rendered} rendered a long \
         conversation, {failed} refused it), {refused} refused at load",
        start.elapsed()
    );
    assert!(loaded > 0 && refused > 0 && rendered > 0 && failed > 0);
}
