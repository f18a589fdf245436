//! Property test: random, truncated and mutated pickles never panic and never allocate beyond
//! the limits (the real fixtures are the seeds). `CAPSEARCH_FUZZ_ITERS` raises the count.

use super::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/neuraltalk");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "p"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    out.sort();
    assert!(out.len() >= 12, "fixtures missing");
    out
}

fn mutate(rng: &mut ChaCha8Rng, seed: &[u8]) -> Vec<u8> {
    let mut p = seed.to_vec();
    match rng.random_range(0..6u8) {
        0 => p.truncate(rng.random_range(0..=p.len())),
        1 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..p.len());
                p[i] ^= 1 << rng.random_range(0..8);
            }
        }
        2 => {
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..p.len());
                p[i] = rng.random();
            }
        }
        3 => {
            // A large length field where a length may be.
            let i = rng.random_range(0..p.len());
            let big: [u8; 8] = [0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff];
            let n = rng.random_range(1..=8).min(p.len() - i);
            p[i..i + n].copy_from_slice(&big[..n]);
        }
        4 => {
            // Splice a chunk of the pickle elsewhere (duplicated opcodes, memo refs).
            let a = rng.random_range(0..p.len());
            let b = rng.random_range(a..=p.len().min(a + 64));
            let chunk = p[a..b].to_vec();
            let at = rng.random_range(0..=p.len());
            p.splice(at..at, chunk);
        }
        _ => {
            let n = rng.random_range(0..256);
            p = (0..n).map(|_| rng.random()).collect();
        }
    }
    p
}

#[test]
fn mutated_pickles_give_errors_not_panics() {
    let iters: usize = std::env::var("CAPSEARCH_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let seeds = seeds();
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let (mut oks, mut errs) = (0usize, 0usize);
    for _ in 0..iters {
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let p = mutate(&mut rng, seed);
        match parse(&p) {
            Ok(_) => oks += 1,
            Err(e) => {
                assert!(e.offset <= p.len());
                errs += 1;
            }
        }
    }
    // Mutations must mostly be caught; the rest parsed into something harmless.
    assert!(errs > iters / 2, "{oks} ok, {errs} errors");
    // Every truncation of a real pickle is an error.
    for seed in seeds.iter().take(2) {
        for cut in (0..seed.len()).step_by(7) {
            assert!(parse(&seed[..cut]).is_err(), "prefix of {cut} bytes parsed");
        }
    }
}
