//! Replays the committed fuzz corpus (fuzz/corpus/differential) through the
//! differential harness on stable, so `make check` runs it without nightly.

mod support {
    pub mod differential;
}

#[test]
fn replay_committed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/differential");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10, "the committed corpus is missing");
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        let result = std::panic::catch_unwind(|| support::differential::run(&data));
        assert!(result.is_ok(), "corpus input {} diverged", path.display());
    }
    println!("replayed {} corpus inputs", inputs.len());
}

#[test]
fn deterministic_random_sequences() {
    // Beyond the corpus: a few thousand generated sequences, same harness.
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..300 {
        let len = (s % 3000) as usize + 16;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect();
        support::differential::run(&data);
    }
}
