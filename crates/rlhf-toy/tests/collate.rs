//! Collation of text through the toy world's tokenizer: the text path equals the fast path on
//! ids, special tokens are checked, and chat templates render prompts only.

use rlhf_data::collate::{collate_sft, Collator, TokenizedPair};
use rlhf_data::records::{Demonstration, Ranking};
use rlhf_toy::{toy_tokenizer, TOY_EOS, TOY_EOS_ID};

#[test]
fn text_path_matches_the_fast_path() {
    let collator = Collator::with_special_tokens(toy_tokenizer(), TOY_EOS, TOY_EOS).unwrap();
    assert_eq!(collator.config().eos_id, TOY_EOS_ID);
    let demos = vec![
        Demonstration {
            id: "d1".into(),
            user_id: "u".into(),
            prompt: "reverse : a b c =>".into(),
            response: "c b a".into(),
        },
        Demonstration {
            id: "d2".into(),
            user_id: "u".into(),
            prompt: "classify fox =>".into(),
            response: "animal".into(),
        },
    ];
    let b = collator.sft_batch(&demos).unwrap();
    let pairs: Vec<TokenizedPair> = demos
        .iter()
        .map(|d| collator.tokenize_demonstration(d).unwrap())
        .collect();
    assert_eq!(b, collate_sft(&pairs, collator.config()).unwrap());
    // Decoding the loss-masked tokens gives back the response (the EOS is a special token).
    for (i, d) in demos.iter().enumerate() {
        let ids: Vec<u32> = b
            .row(i)
            .iter()
            .zip(b.loss_row(i))
            .filter(|(_, &m)| m == 1.0)
            .map(|(&t, _)| t as u32)
            .collect();
        assert_eq!(*ids.last().unwrap(), TOY_EOS_ID);
        assert_eq!(collator.decode(&ids).unwrap(), d.response);
    }
    let par = collator.tokenize_demonstrations(&demos).unwrap();
    assert_eq!(par, pairs);
    assert_eq!(
        collator.encode_all(&["a b", "fox"]).unwrap(),
        vec![
            collator.encode("a b").unwrap(),
            collator.encode("fox").unwrap()
        ]
    );
    let rb = collator
        .reward_batch(&[Ranking::pairwise(
            "r",
            "u",
            "classify fox =>",
            "animal",
            "fruit",
        )])
        .unwrap();
    assert_eq!(rb.batch, 2);
    let pb = collator
        .prompt_batch(&["classify fox =>", "reverse : a b c =>"])
        .unwrap();
    assert_eq!(pb.prompt_lens, vec![3, 6]);
    let packed = collator
        .pack_texts(&["the cat sees the dog .", "a b c"], 4)
        .unwrap();
    assert_eq!(packed.num_tokens, 7 + 4);
}

#[test]
fn collator_errors_on_unknown_special_token() {
    let err = Collator::with_special_tokens(toy_tokenizer(), "</s>", TOY_EOS).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tokenizer: token \"</s>\" is not in the vocabulary: expected the tokenizer to define it"
    );
}

#[test]
fn a_chat_template_renders_every_prompt_and_no_response() {
    // A template in toy words: the rendered prompt is "answer only : <prompt> =>".
    let t = rlhf_data::chat::ChatTemplate::new(
        "{% for m in messages %}answer only : {{ m.content }}{% endfor %}\
         {% if add_generation_prompt %} =>{% endif %}",
        "",
        TOY_EOS,
    )
    .unwrap();
    let plain = Collator::with_special_tokens(toy_tokenizer(), TOY_EOS, TOY_EOS).unwrap();
    let chat = plain.clone().with_chat_template(Some(t));
    let want = plain.encode("answer only : reverse : a b c =>").unwrap();
    assert_eq!(chat.encode_prompt("reverse : a b c").unwrap(), want);
    assert_eq!(
        plain.encode_prompt("reverse : a b c =>").unwrap(),
        plain.encode("reverse : a b c =>").unwrap()
    );
    let demo = Demonstration {
        id: "d".into(),
        user_id: "u".into(),
        prompt: "reverse : a b c".into(),
        response: "c b a".into(),
    };
    let pair = chat.tokenize_demonstration(&demo).unwrap();
    assert_eq!(pair.prompt, want);
    assert_eq!(pair.response, plain.encode("c b a").unwrap());
    let ranking = Ranking {
        id: "r".into(),
        user_id: "u".into(),
        prompt: "reverse : a b c".into(),
        responses: vec!["c b a".into(), "a b c".into()],
        ranking: vec![0, 1],
    };
    let g = chat.tokenize_ranking(&ranking).unwrap();
    assert_eq!(g.prompt, want);
    assert_eq!(g.responses[1], plain.encode("a b c").unwrap());
    let batch = chat.prompt_batch(&["reverse : a b c"]).unwrap();
    let row: Vec<i64> = want.iter().map(|&t| i64::from(t)).collect();
    assert_eq!(batch.row(0), &row[..]);
}
