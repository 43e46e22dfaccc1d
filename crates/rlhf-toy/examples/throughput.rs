//! Records/s for reading + validating + tokenizing a JSONL file of toy demonstrations, and the
//! cost of collating a W-SFT batch.
//!
//! Run: `cargo run --release -p rlhf-toy --example throughput [-- N]` (N records, default
//! 100000; `-- --help` shows the usage). The file is generated from the toy world in a
//! temporary directory.

use std::time::Instant;

use rlhf_data::collate::{collate_sft, CollateConfig, Collator, Padding, TokenizedPair};
use rlhf_data::records::{write_jsonl, Demonstration, JsonlReader, ReadOptions};
use rlhf_toy::{toy_tokenizer, ToyConfig, ToyWorld, TOY_EOS};

#[derive(clap::Parser, Debug)]
#[command(
    about = "Records/s for reading, validating and tokenizing toy demonstrations, and the cost of collating a batch"
)]
struct Args {
    /// Number of toy demonstrations to generate, write and read back.
    #[arg(default_value_t = 100_000)]
    n: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = <Args as clap::Parser>::parse().n;

    // Generate at least n demonstrations (about 3 prompts per user on average).
    let start = Instant::now();
    let mut cfg = ToyConfig {
        num_users: n / 3 + 1,
        heldout_users: 0,
        pretrain_docs: 0,
        heldout_pretrain_docs: 0,
        ..ToyConfig::default()
    };
    let mut world = ToyWorld::generate(&cfg)?;
    while world.demonstrations.len() < n {
        cfg.num_users *= 2;
        world = ToyWorld::generate(&cfg)?;
    }
    world.demonstrations.truncate(n);
    println!(
        "generated {} demonstrations ({} users) in {:.2?}",
        world.demonstrations.len(),
        cfg.num_users,
        start.elapsed()
    );

    let dir = std::env::temp_dir().join(format!("rlhf-data-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("demonstrations.jsonl");
    let start = Instant::now();
    write_jsonl(&path, &world.demonstrations)?;
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "wrote {:.1} MB in {:.2?} ({:.0} records/s)",
        bytes as f64 / 1e6,
        start.elapsed(),
        n as f64 / start.elapsed().as_secs_f64()
    );

    // Read + validate only.
    let start = Instant::now();
    let mut count = 0usize;
    for rec in JsonlReader::<Demonstration, _>::open(&path, ReadOptions::strict())? {
        let rec = rec?;
        count += usize::from(!rec.response.is_empty());
    }
    let read_s = start.elapsed().as_secs_f64();
    println!(
        "read + validate:            {count} records in {read_s:.3} s = {:>9.0} records/s ({:.0} MB/s)",
        count as f64 / read_s,
        bytes as f64 / 1e6 / read_s
    );

    // Read + validate + tokenize (prompt and response).
    let collator = Collator::with_special_tokens(toy_tokenizer(), TOY_EOS, TOY_EOS)?;
    let start = Instant::now();
    let mut tokenized: Vec<TokenizedPair> = Vec::with_capacity(n);
    for rec in JsonlReader::<Demonstration, _>::open(&path, ReadOptions::strict())? {
        tokenized.push(collator.tokenize_demonstration(&rec?)?);
    }
    let all_s = start.elapsed().as_secs_f64();
    let tokens: usize = tokenized
        .iter()
        .map(|t| t.prompt.len() + t.response.len())
        .sum();
    println!(
        "read + validate + tokenize: {} records in {all_s:.3} s = {:>9.0} records/s ({:.0} tokens/s)",
        tokenized.len(),
        tokenized.len() as f64 / all_s,
        tokens as f64 / all_s
    );

    // Read + validate, then tokenize the whole dataset in parallel (rayon).
    let start = Instant::now();
    let demos: Vec<Demonstration> =
        JsonlReader::<Demonstration, _>::open(&path, ReadOptions::strict())?
            .collect::<Result<_, _>>()?;
    let par = collator.tokenize_demonstrations(&demos)?;
    let par_s = start.elapsed().as_secs_f64();
    assert_eq!(par, tokenized);
    println!(
        "read + validate + tokenize ({} rayon threads): {:>9.0} records/s",
        rayon::current_num_threads(),
        par.len() as f64 / par_s
    );

    // Collating one W-SFT batch (8 x 256, pre-tokenized).
    let sft: Vec<TokenizedPair> = (0..8u32)
        .map(|i| TokenizedPair {
            prompt: (0..128u32).map(|t| (t * 31 + i) % 8189 + 3).collect(),
            response: (0..127u32).map(|t| (t * 17 + i) % 8189 + 3).collect(),
        })
        .collect();
    let cc = CollateConfig::new(0, 0)
        .with_limits(128, 128)
        .with_padding(Padding::Fixed(256));
    let iters = 20_000;
    let start = Instant::now();
    let mut sink = 0i64;
    for _ in 0..iters {
        let b = collate_sft(std::hint::black_box(&sft), &cc)?;
        sink += b.input_ids[0];
    }
    let per = start.elapsed().as_secs_f64() / iters as f64;
    println!(
        "collate one W-SFT batch (8 x 256): {:.2} us (checksum {sink})",
        per * 1e6
    );

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
