//! Collation: loss masks cover exactly the response tokens, truncation keeps the end of the
//! prompt, left/right padding, reward-model grouping, and packing loses no token.

use proptest::prelude::*;
use rlhf_data::collate::{
    collate_prompts, collate_rewards, collate_sft, pack_documents, CollateConfig, Packer, Padding,
    TokenizedPair, TokenizedRanking,
};

const EOS: u32 = 2;
const PAD: u32 = 1;

fn cfg(max_p: usize, max_r: usize) -> CollateConfig {
    CollateConfig::new(EOS, PAD).with_limits(max_p, max_r)
}

fn pair(p: &[u32], r: &[u32]) -> TokenizedPair {
    TokenizedPair {
        prompt: p.to_vec(),
        response: r.to_vec(),
    }
}

#[test]
fn sft_row_layout_and_masks() {
    let b = collate_sft(
        &[pair(&[10, 11, 12], &[20, 21]), pair(&[13], &[22])],
        &cfg(8, 8),
    )
    .unwrap();
    assert_eq!((b.batch, b.seq_len), (2, 6));
    assert_eq!(b.row(0), &[10, 11, 12, 20, 21, 2]);
    assert_eq!(b.row(1), &[13, 22, 2, 1, 1, 1]);
    assert_eq!(b.attention_mask, vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
    assert_eq!(
        b.loss_mask,
        vec![0., 0., 0., 1., 1., 1., 0., 1., 1., 0., 0., 0.]
    );
    assert_eq!(b.prompt_lens, vec![3, 1]);
    assert_eq!(b.response_lens, vec![3, 2]);
    assert_eq!(b.num_loss_tokens(), 5);
}

#[test]
fn truncation_keeps_the_end_of_the_prompt_and_the_start_of_the_response() {
    let prompt: Vec<u32> = (100..110).collect();
    let response: Vec<u32> = (200..210).collect();
    let b = collate_sft(&[pair(&prompt, &response)], &cfg(4, 3)).unwrap();
    // Prompt keeps its last 4 tokens; the response its first 3, without EOS (it was cut).
    assert_eq!(b.row(0), &[106, 107, 108, 109, 200, 201, 202]);
    assert_eq!(b.loss_row(0), &[0., 0., 0., 0., 1., 1., 1.]);

    // A response that fits with its EOS keeps the EOS (the EOS counts towards the limit).
    let b = collate_sft(&[pair(&[1, 5], &[7, 8])], &cfg(4, 3)).unwrap();
    assert_eq!(b.row(0), &[1, 5, 7, 8, 2]);
    let b = collate_sft(&[pair(&[1, 5], &[7, 8, 9])], &cfg(4, 3)).unwrap();
    assert_eq!(b.row(0), &[1, 5, 7, 8, 9]);

    // Prompt batches truncate the same way.
    let p = collate_prompts(std::slice::from_ref(&prompt), &cfg(4, 3)).unwrap();
    assert_eq!(p.row(0), &[106, 107, 108, 109]);
}

#[test]
fn empty_response_is_just_eos() {
    let b = collate_sft(&[pair(&[5], &[])], &cfg(4, 4)).unwrap();
    assert_eq!(b.row(0), &[5, 2]);
    assert_eq!(b.loss_row(0), &[0., 1.]);
}

#[test]
fn padding_policies() {
    let ex = [pair(&[5, 6], &[7])];
    let fixed = collate_sft(&ex, &cfg(8, 8).with_padding(Padding::Fixed(6))).unwrap();
    assert_eq!(fixed.row(0), &[5, 6, 7, 2, 1, 1]);
    let multiple = collate_sft(&ex, &cfg(8, 8).with_padding(Padding::MultipleOf(8))).unwrap();
    assert_eq!(multiple.seq_len, 8);
    let err = collate_sft(&ex, &cfg(8, 8).with_padding(Padding::Fixed(3))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "collation: a SFT row has 4 tokens but padding is Fixed(3): expected rows of at most 3 tokens (lower the limits or raise the length)"
    );
}

#[test]
fn invalid_inputs_are_errors() {
    let none: [TokenizedPair; 0] = [];
    assert_eq!(
        collate_sft(&none, &cfg(4, 4)).unwrap_err().to_string(),
        "collation: empty batch: expected at least one example"
    );
    assert_eq!(
        collate_sft(&[pair(&[1], &[2]), pair(&[], &[3])], &cfg(4, 4))
            .unwrap_err()
            .to_string(),
        "collation: example 1: the prompt has no tokens; expected at least one token before the response"
    );
    assert_eq!(
        collate_sft(&[pair(&[1], &[2])], &cfg(0, 4)).unwrap_err().to_string(),
        "invalid configuration: max_prompt_tokens is 0: expected at least 1 (a response needs a token before it)"
    );
    let bad = TokenizedRanking {
        prompt: vec![1],
        responses: vec![vec![2], vec![3]],
        ranking: vec![0, 0],
    };
    assert_eq!(
        collate_rewards(&[bad], &cfg(4, 4)).unwrap_err().to_string(),
        "collation: group 0: expected the ranking to be a permutation of 0..2, found [0, 0]"
    );
    let k1 = TokenizedRanking {
        prompt: vec![1],
        responses: vec![vec![2]],
        ranking: vec![0],
    };
    assert_eq!(
        collate_rewards(&[k1], &cfg(4, 4)).unwrap_err().to_string(),
        "collation: group 0: expected at least 2 responses (K >= 2), found 1"
    );
    assert!(pack_documents(&[vec![1u32]], 0, EOS, PAD).is_err());
}

#[test]
fn prompt_batches_are_left_padded() {
    let b = collate_prompts(&[vec![5u32, 6, 7], vec![8]], &cfg(8, 8)).unwrap();
    assert_eq!((b.batch, b.seq_len), (2, 3));
    assert_eq!(b.row(0), &[5, 6, 7]);
    assert_eq!(b.row(1), &[1, 1, 8]);
    assert_eq!(b.attention_mask, vec![1, 1, 1, 0, 0, 1]);
    assert_eq!(b.position_ids(), vec![0, 1, 2, 0, 0, 0]);
    assert_eq!(b.prompt_lens, vec![3, 1]);
}

#[test]
fn reward_batches_forward_each_response_once() {
    let groups = vec![
        TokenizedRanking {
            prompt: vec![10, 11],
            responses: vec![vec![20], vec![21, 22]],
            ranking: vec![1, 0],
        },
        TokenizedRanking {
            prompt: vec![12],
            responses: vec![vec![30], vec![31], vec![32, 33, 34], vec![35]],
            ranking: vec![2, 0, 3, 1],
        },
    ];
    let b = collate_rewards(&groups, &cfg(8, 8)).unwrap();
    assert_eq!(b.batch, 6);
    assert_eq!(b.group_sizes, vec![2, 4]);
    assert_eq!(b.group_offsets(), vec![0, 2]);
    assert_eq!(b.seq_len, 5);
    assert_eq!(b.row(0), &[10, 11, 20, 2, 1]);
    assert_eq!(b.row(1), &[10, 11, 21, 22, 2]);
    assert_eq!(b.row(4), &[12, 32, 33, 34, 2]);
    assert_eq!(b.last_token, vec![3, 4, 2, 2, 4, 2]);
    // The reward is read at the EOS that ends each response.
    for r in 0..b.batch {
        assert_eq!(b.row(r)[b.last_token[r]], i64::from(EOS));
    }
    let pairs = b.pairs();
    assert_eq!(pairs.len(), 1 + 6);
    assert_eq!((pairs[0].winner_row, pairs[0].loser_row), (1, 0));
    // Group 1: ranking 2 > 0 > 3 > 1, rows offset by 2.
    let g1: Vec<(usize, usize)> = pairs[1..]
        .iter()
        .map(|p| (p.winner_row, p.loser_row))
        .collect();
    assert_eq!(g1, vec![(4, 2), (4, 5), (4, 3), (2, 5), (2, 3), (5, 3)]);
    assert!(pairs[1..].iter().all(|p| p.group == 1));
}

#[test]
fn packing_example() {
    let docs = vec![vec![5u32, 6, 7], vec![8], vec![9, 10, 11, 12]];
    let p = pack_documents(&docs, 4, EOS, PAD).unwrap();
    assert_eq!(p.num_blocks, 3);
    assert_eq!(p.row(0), &[5, 6, 7, 2]);
    assert_eq!(p.row(1), &[8, 2, 9, 10]);
    assert_eq!(p.row(2), &[11, 12, 2, 1]);
    assert_eq!(p.attention_mask[8..], [1, 1, 1, 0]);
    assert_eq!(p.num_tokens, 11);
    let lm = p.to_lm_batch();
    assert_eq!(lm.loss_row(2), &[0., 1., 1., 0.]);
    assert_eq!(lm.loss_row(0), &[0., 1., 1., 1.]);
    assert_eq!(lm.num_loss_tokens(), 8);
}

fn ids(max_len: usize) -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(3u32..1000, 0..max_len)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Loss masks cover exactly the kept response tokens (plus the EOS when the response is
    /// complete); the prompt keeps its last tokens; padding is masked everywhere.
    #[test]
    fn prop_sft_masks_cover_exactly_the_response(
        examples in proptest::collection::vec((ids(40), ids(40)), 1..8),
        max_p in 1usize..30,
        max_r in 1usize..30,
    ) {
        let examples: Vec<TokenizedPair> = examples
            .into_iter()
            .map(|(mut p, r)| { if p.is_empty() { p.push(3); } TokenizedPair { prompt: p, response: r } })
            .collect();
        let b = collate_sft(&examples, &cfg(max_p, max_r)).unwrap();
        prop_assert_eq!(b.input_ids.len(), b.batch * b.seq_len);
        prop_assert_eq!(b.loss_mask.len(), b.batch * b.seq_len);
        let mut longest = 0;
        for (i, ex) in examples.iter().enumerate() {
            let row = b.row(i);
            let loss = b.loss_row(i);
            let att = &b.attention_mask[i * b.seq_len..(i + 1) * b.seq_len];
            let kept_p = &ex.prompt[ex.prompt.len().saturating_sub(max_p)..];
            let complete = ex.response.len() < max_r;
            let kept_r: Vec<u32> = if complete {
                ex.response.iter().copied().chain([EOS]).collect()
            } else {
                ex.response[..max_r].to_vec()
            };
            let len = kept_p.len() + kept_r.len();
            longest = longest.max(len);
            // Truncation keeps the end of the prompt.
            prop_assert_eq!(&row[..kept_p.len()], &kept_p.iter().map(|&t| i64::from(t)).collect::<Vec<_>>()[..]);
            prop_assert_eq!(*row.get(kept_p.len().wrapping_sub(1)).unwrap(), i64::from(*ex.prompt.last().unwrap()));
            // The loss mask selects exactly the kept response (+ EOS).
            let selected: Vec<u32> = row.iter().zip(loss).filter(|(_, &m)| m == 1.0).map(|(&t, _)| t as u32).collect();
            prop_assert_eq!(&selected, &kept_r);
            prop_assert!(loss[..kept_p.len()].iter().all(|&m| m == 0.0));
            prop_assert_eq!(loss[0], 0.0);
            // Attention covers the real tokens; the rest is padding.
            prop_assert!(att[..len].iter().all(|&m| m == 1));
            prop_assert!(att[len..].iter().all(|&m| m == 0));
            prop_assert!(row[len..].iter().all(|&t| t == i64::from(PAD)));
            prop_assert!(loss[len..].iter().all(|&m| m == 0.0));
            prop_assert_eq!(b.prompt_lens[i], kept_p.len());
            prop_assert_eq!(b.response_lens[i], kept_r.len());
        }
        prop_assert_eq!(b.seq_len, longest);
    }

    /// Left padding: each row ends at the last column with the end of its prompt.
    #[test]
    fn prop_prompt_batches_end_with_the_prompt(
        prompts in proptest::collection::vec(ids(30), 1..8),
        max_p in 1usize..20,
    ) {
        let prompts: Vec<Vec<u32>> = prompts.into_iter().map(|mut p| { p.push(5); p }).collect();
        let b = collate_prompts(&prompts, &cfg(max_p, 4)).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let kept = &p[p.len().saturating_sub(max_p)..];
            let row = b.row(i);
            let pad = b.seq_len - kept.len();
            prop_assert!(row[..pad].iter().all(|&t| t == i64::from(PAD)));
            prop_assert_eq!(&row[pad..], &kept.iter().map(|&t| i64::from(t)).collect::<Vec<_>>()[..]);
            let att = &b.attention_mask[i * b.seq_len..(i + 1) * b.seq_len];
            prop_assert_eq!(att.iter().filter(|&&m| m == 1).count(), kept.len());
            prop_assert!(att[pad..].iter().all(|&m| m == 1));
        }
    }

    /// Packing loses no token: the real tokens of the blocks are the documents joined with EOS,
    /// every block but the last is full, and the streaming packer agrees.
    #[test]
    fn prop_packing_loses_no_token(docs in proptest::collection::vec(ids(50), 0..20), block_len in 1usize..64) {
        let p = pack_documents(&docs, block_len, EOS, PAD).unwrap();
        let expected: Vec<u32> = docs.iter().flat_map(|d| d.iter().copied().chain([EOS])).collect();
        prop_assert_eq!(p.tokens(), expected.clone());
        prop_assert_eq!(p.num_tokens, expected.len());
        prop_assert_eq!(p.num_blocks, expected.len().div_ceil(block_len));
        prop_assert_eq!(p.input_ids.len(), p.num_blocks * block_len);
        if p.num_blocks > 1 {
            prop_assert!(p.attention_mask[..(p.num_blocks - 1) * block_len].iter().all(|&m| m == 1));
        }
        let mut packer = Packer::new(block_len, EOS, PAD).unwrap();
        let mut streamed: Vec<u32> = Vec::new();
        for d in &docs {
            packer.push(d);
            while let Some(b) = packer.pop_block() {
                prop_assert_eq!(b.len(), block_len);
                streamed.extend(b);
            }
        }
        for (b, real) in packer.finish() {
            streamed.extend_from_slice(&b[..real]);
        }
        prop_assert_eq!(streamed, expected);
    }

    /// Reward batches contain every response once, in group order, with its prompt.
    #[test]
    fn prop_reward_batches(
        groups in proptest::collection::vec((ids(10), proptest::collection::vec(ids(10), 2..6)), 1..5),
        seed in any::<u64>(),
    ) {
        let groups: Vec<TokenizedRanking> = groups.into_iter().enumerate().map(|(g, (mut p, rs))| {
            p.push(4);
            let k = rs.len();
            let mut ranking: Vec<usize> = (0..k).collect();
            ranking.rotate_left((seed as usize + g) % k);
            TokenizedRanking { prompt: p, responses: rs, ranking }
        }).collect();
        let c = cfg(64, 64);
        let b = collate_rewards(&groups, &c).unwrap();
        let mut row = 0;
        for g in &groups {
            for r in &g.responses {
                let expected: Vec<i64> = g.prompt.iter().chain(r).chain([&EOS]).map(|&t| i64::from(t)).collect();
                prop_assert_eq!(&b.row(row)[..expected.len()], &expected[..]);
                prop_assert_eq!(b.last_token[row], expected.len() - 1);
                row += 1;
            }
        }
        prop_assert_eq!(row, b.batch);
        let expected_pairs: usize = groups.iter().map(|g| g.responses.len() * (g.responses.len() - 1) / 2).sum();
        prop_assert_eq!(b.pairs().len(), expected_pairs);
    }
}

#[test]
fn collating_a_wsft_batch_is_fast() {
    // W-SFT: 8 sequences x 256 tokens, half prompt. Generous bound (the bench measures it):
    // 200 collations must take well under a second even in the dev profile.
    let examples: Vec<TokenizedPair> = (0..8)
        .map(|i| TokenizedPair {
            prompt: (0..128).map(|t| (t * 7 + i) % 8000 + 3).collect(),
            response: (0..127).map(|t| (t * 13 + i) % 8000 + 3).collect(),
        })
        .collect();
    let c = cfg(128, 128).with_padding(Padding::Fixed(256));
    let start = std::time::Instant::now();
    for _ in 0..200 {
        let b = collate_sft(&examples, &c).unwrap();
        assert_eq!(b.input_ids.len(), 8 * 256);
    }
    assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());
}

#[test]
fn truncation_counts_what_the_limits_cut() {
    let c = cfg(3, 3);
    let pairs = [
        pair(&[5, 6, 7], &[8, 9]),            // fits: 2 response tokens + EOS
        pair(&[5, 6, 7, 8], &[9]),            // prompt cut
        pair(&[5], &[8, 9, 10]),              // response fits only without its EOS: cut
        pair(&[4, 5, 6, 7], &[8, 9, 10, 11]), // both
    ];
    let t = c.truncation_of_pairs(&pairs);
    assert_eq!(
        (t.examples, t.prompts_cut, t.responses, t.responses_cut),
        (4, 2, 4, 2)
    );
    // What collation keeps agrees: a cut response's row has no EOS.
    for p in &pairs {
        let (kept, eos) = c.truncate_response(&p.response);
        assert_eq!(
            c.cuts_response(&p.response),
            kept.len() < p.response.len() || !eos
        );
        assert_eq!(
            c.cuts_prompt(&p.prompt),
            c.truncate_prompt(&p.prompt).len() < p.prompt.len()
        );
    }
    let msg = t
        .message(
            "demonstrations of d.jsonl",
            &c,
            "train.max_prompt_tokens",
            "train.max_response_tokens",
        )
        .unwrap();
    assert!(msg.contains("2 of 4 demonstrations of d.jsonl have a prompt longer than train.max_prompt_tokens = 3"), "{msg}");
    assert!(
        msg.contains("2 of 4 responses are cut at train.max_response_tokens = 3"),
        "{msg}"
    );
    // Without an EOS to append, a response of exactly the limit is whole.
    let no_eos = CollateConfig {
        append_eos: false,
        ..c.clone()
    };
    assert!(!no_eos.cuts_response(&[8, 9, 10]) && no_eos.cuts_response(&[8, 9, 10, 11]));
    // Rankings: the prompt once, every response.
    let r = TokenizedRanking {
        prompt: vec![1, 2, 3, 4],
        responses: vec![vec![5], vec![5, 6, 7], vec![5, 6]],
        ranking: vec![0, 1, 2],
    };
    let t = c.truncation_of_rankings(&[r.clone(), r]);
    assert_eq!(
        (t.examples, t.prompts_cut, t.responses, t.responses_cut),
        (2, 2, 6, 2)
    );
    // Nothing cut: no message.
    let fits = c.truncation_of_pairs(&pairs[..1]);
    assert_eq!(fits.message("x", &c, "a", "b"), None);
}

#[test]
fn unknown_tokens_are_counted_for_tokenizers_that_have_one() {
    use rlhf_data::collate::Collator;
    use std::str::FromStr;
    let word_level = r#"{"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "unk_token": "<unk>",
                  "vocab": {"<unk>": 0, "<eos>": 1, "red": 2, "fox": 3}}}"#;
    let tok = tokenizers::Tokenizer::from_str(word_level).unwrap();
    let col = Collator::new(tok, CollateConfig::new(1, 1)).unwrap();
    assert_eq!(col.unknown_token(), Some(("<unk>".to_string(), 0)));
    let a = col.encode("red fox").unwrap();
    let b = col.encode("the red cat").unwrap();
    assert_eq!(b, [0, 2, 0]);
    let u = col.unknown_tokens([&a[..], &b[..]]).unwrap();
    assert_eq!((u.sequences, u.sequences_with_unknown), (2, 1));
    assert_eq!((u.tokens, u.unknown), (5, 2));
    let m = u.message("prompts of p.jsonl").unwrap();
    let start = "prompts of p.jsonl: 2 of 5 tokens (40.0%, in 1 of 2 sequences) are the \
                 tokenizer's unknown token <unk>";
    assert!(m.starts_with(start), "{m}");
    // Known text only: counted, nothing to say.
    let u = col.unknown_tokens([&a[..]]).unwrap();
    assert_eq!((u.unknown, u.message("x")), (0, None));
    // A byte-level BPE has no unknown token.
    let bpe = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": true}, "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": {"a": 0, "b": 1}, "merges": []}}"#;
    let tok = tokenizers::Tokenizer::from_str(bpe).unwrap();
    let col = Collator::new(tok, CollateConfig::new(0, 0)).unwrap();
    assert_eq!(col.unknown_token(), None);
    assert_eq!(col.unknown_tokens([&[0u32, 1][..]]), None);
}

/// A word-level tokenizer whose post-processor is `post` (JSON).
fn word_level_with(post: &str) -> tokenizers::Tokenizer {
    use std::str::FromStr;
    let json = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{{"id": 0, "content": "<bos>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}},
            {{"id": 1, "content": "<eos>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}}],
        "normalizer": null, "pre_tokenizer": {{"type": "WhitespaceSplit"}},
        "post_processor": {post}, "decoder": null,
        "model": {{"type": "WordLevel", "unk_token": "<eos>",
                  "vocab": {{"<bos>": 0, "<eos>": 1, "a": 2, "red": 3, "fox": 4}}}}}}"#
    );
    tokenizers::Tokenizer::from_str(&json).unwrap()
}

/// Prompts encoded without a chat template start with what the tokenizer's post-processor puts
/// before a text (Llama's and Gemma's BOS), as `transformers`' `tokenizer(prompt)`; an EOS it
/// appends is not taken, and a tokenizer that adds nothing (GPT-2's) adds nothing. Responses
/// get nothing, and a chat template writes its own BOS.
#[test]
fn prompts_start_with_the_tokenizers_bos() {
    use rlhf_data::chat::ChatTemplate;
    use rlhf_data::collate::{prompt_prefix, Collator};
    let special = |name: &str, id: u32| {
        format!(r#""{name}": {{"id": "{name}", "ids": [{id}], "tokens": ["{name}"]}}"#)
    };
    let template = |single: &str| {
        format!(
            r#"{{"type": "TemplateProcessing", "single": {single}, "pair": [],
            "special_tokens": {{{}, {}}}}}"#,
            special("<bos>", 0),
            special("<eos>", 1)
        )
    };
    let bos = template(
        r#"[{"SpecialToken": {"id": "<bos>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}}]"#,
    );
    let eos = template(
        r#"[{"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<eos>", "type_id": 0}}]"#,
    );
    let both = template(
        r#"[{"SpecialToken": {"id": "<bos>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<eos>", "type_id": 0}}]"#,
    );
    for (post, want) in [
        (bos.as_str(), vec![0u32]),
        (eos.as_str(), vec![]),
        (both.as_str(), vec![0]),
        ("null", vec![]),
    ] {
        let tok = word_level_with(post);
        assert_eq!(prompt_prefix(&tok), want, "{post}");
        let col = Collator::new(tok, CollateConfig::new(1, 1)).unwrap();
        assert_eq!(
            col.encode_prompt("red fox").unwrap(),
            [want.clone(), vec![3, 4]].concat()
        );
        assert_eq!(
            col.encode("red fox").unwrap(),
            [3, 4],
            "responses: as they are"
        );
        let chat =
            ChatTemplate::new("{{ bos_token }}{{ messages[0].content }}", "<bos>", "").unwrap();
        let col = col.with_chat_template(Some(chat));
        assert_eq!(
            col.encode_prompt("red fox").unwrap(),
            [0, 3, 4],
            "the template's BOS only"
        );
    }
}
