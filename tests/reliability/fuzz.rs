//! A fuzz run of the two readers of outside input: the batch-file parser and Sequence decoding
//! (the object as the watch delivers it, then the checks the controller runs before launching).
//! No nightly toolchain here for cargo-fuzz, so: a seeded mutator over a corpus of real inputs
//! (the seed's fixtures, the examples, every invalid fixture), byte-level and structural, with
//! known-nasty YAML and JSON fragments (aliases, tags, deep nesting, huge numbers, control
//! characters). Every case runs under `catch_unwind`: a panic is a finding, with its input kept.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use sequencer::api::guarded_sequence::GuardedSequence;
use sequencer::controller::sequence::plan_source::check_steps;
use sequencer::controller::sequence::undecodable::located_problems;
use serde_json::Value;

pub struct Figures {
    pub cases: u64,
    pub batch_cases: u64,
    pub sequence_cases: u64,
    pub accepted: u64,
    pub panics: Vec<String>,
    pub slowest: Duration,
    /// The slowest input's target and its first 200 characters.
    pub slowest_input: String,
}

/// A small deterministic generator (the run repeats from its printed seed).
pub struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low).max(1)
    }
}

const FRAGMENTS: &[&str] = &[
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!!str ",
    "!custom ",
    "? ",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "\t",
    "\n",
    "\r\n",
    "~",
    "null",
    "true",
    "1e999",
    "-0",
    "0x1F",
    "0o17",
    ".inf",
    ".nan",
    "99999999999999999999999999",
    "-1",
    "4294967296",
    "\u{0}",
    "\u{feff}",
    "\u{202e}",
    "%YAML 1.2\n",
    "#",
    "\\u0000",
    "\"\\ud800\"",
    "type",
    "ecs_task",
    "parameters",
    "count",
    "cluster",
    "task_definition",
    "taskDefinition",
    "retry",
    "limit",
    "backoff",
    "overrides",
    "container_overrides",
    "success",
    "containers",
];

/// Runs for `duration`; returns what it saw.
pub fn run(duration: Duration, seed: u64, batches: Vec<String>, sequences: Vec<String>) -> Figures {
    let mut random = Random(seed | 1);
    let mut figures = Figures {
        cases: 0,
        batch_cases: 0,
        sequence_cases: 0,
        accepted: 0,
        panics: Vec::new(),
        slowest: Duration::ZERO,
        slowest_input: String::new(),
    };
    let start = Instant::now();
    while start.elapsed() < duration {
        let batch = random.below(2) == 0;
        let corpus = if batch { &batches } else { &sequences };
        let input = mutate(&mut random, corpus);
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if batch {
                read_batch(&input)
            } else {
                read_sequence(&input)
            }
        }));
        if began.elapsed() > figures.slowest {
            figures.slowest = began.elapsed();
            let target = if batch { "batch file" } else { "Sequence" };
            let head: String = input.chars().take(200).collect();
            figures.slowest_input = format!("{target} of {} bytes: {head:?}", input.len());
        }
        figures.cases += 1;
        if batch {
            figures.batch_cases += 1;
        } else {
            figures.sequence_cases += 1;
        }
        match outcome {
            Ok(true) => figures.accepted += 1,
            Ok(false) => {}
            Err(_) => figures.panics.push(input),
        }
    }
    figures
}

/// The batch-file parser and checker, as `sequencer run` calls it.
fn read_batch(text: &str) -> bool {
    sequencer::batch::file::parse("fuzz.yml", text).is_ok()
}

/// A Sequence as the watch hands it to the controller, then the checks before any launch.
fn read_sequence(text: &str) -> bool {
    match GuardedSequence::from_json(text).0 {
        Ok(seq) => check_steps(&seq.spec.steps).is_ok(),
        Err(_) => {
            if let Ok(object) = serde_json::from_str::<Value>(text)
                && let Some(spec) = object.get("spec")
            {
                let _ = located_problems(spec);
            }
            false
        }
    }
}

fn mutate(random: &mut Random, corpus: &[String]) -> String {
    let mut bytes = corpus[random.below(corpus.len())].clone().into_bytes();
    for _ in 0..random.range(1, 6) {
        let at = random.below(bytes.len() + 1);
        match random.below(9) {
            0 if !bytes.is_empty() => {
                let end = (at + random.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 | 2 => {
                let fragment = FRAGMENTS[random.below(FRAGMENTS.len())];
                bytes.splice(at..at, fragment.bytes());
            }
            3 if !bytes.is_empty() => {
                let i = random.below(bytes.len());
                bytes[i] ^= 1 << random.below(8);
            }
            4 if !bytes.is_empty() => {
                // Duplicate a slice elsewhere (repeated keys, repeated steps).
                let from = random.below(bytes.len());
                let end = (from + random.below(64)).min(bytes.len());
                let slice = bytes[from..end].to_vec();
                bytes.splice(at..at, slice);
            }
            5 => {
                // Splice in part of another input.
                let other = corpus[random.below(corpus.len())].as_bytes();
                let from = random.below(other.len());
                let end = (from + random.below(200)).min(other.len());
                bytes.splice(at..at, other[from..end].iter().copied());
            }
            6 => {
                // Deep nesting, past any recursion limit.
                let depth = random.range(50, 3000) as usize;
                let (open, close) = if random.below(2) == 0 {
                    ("[", "]")
                } else {
                    ("{\"a\":", "}")
                };
                let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                bytes.splice(at..at, nested.bytes());
            }
            7 => {
                // An alias bomb: each level refers to the one before several times.
                let mut bomb = String::from("x: &l0 [a, a, a, a, a, a, a, a]\n");
                for level in 1..random.range(2, 12) {
                    let prev = level - 1;
                    bomb.push_str(&format!(
                        "x{level}: &l{level} [*l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}]\n"
                    ));
                }
                bytes.splice(at..at, bomb.bytes());
            }
            _ => {
                // A long run of one character.
                let c = b"a9-{[:\"' \n"[random.below(10)];
                let n = random.below(4096);
                bytes.splice(at..at, std::iter::repeat_n(c, n));
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
