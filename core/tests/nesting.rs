//! Decoding is depth-bounded: a recursive command type decodes up to
//! [`MAX_NESTING`] levels, and a body nested deeper is a typed error, not a stack overflow.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

use serde::{Deserialize, Serialize};
use zmqrpc_core::nesting::MAX_NESTING;
use zmqrpc_core::{frame, DecodeError};

/// A boxed expression tree: each `Neg` is one level (an enum), as is the `Lit` at the bottom.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Expr {
    Lit(i32),
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
}

fn negations(depth: usize) -> Expr {
    (0..depth).fold(Expr::Lit(7), |e, _| Expr::Neg(Box::new(e)))
}

/// A list of lists: each level is a newtype and a sequence.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Tree(Vec<Tree>);

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap()
}

#[test]
fn a_tree_up_to_the_limit_decodes_and_one_level_more_is_too_deep() {
    let fits = negations(MAX_NESTING - 1);
    assert_eq!(frame::decode_body::<Expr>(&encode(&fits)).unwrap(), fits);
    let deeper = negations(MAX_NESTING);
    assert_eq!(
        frame::decode_body::<Expr>(&encode(&deeper)),
        Err(DecodeError::TooDeep)
    );
    let wide = Expr::Add(Box::new(negations(10)), Box::new(negations(20)));
    assert_eq!(frame::decode_body::<Expr>(&encode(&wide)).unwrap(), wide);
}

#[test]
fn nested_lists_count_every_level() {
    let tree = |depth: usize| (0..depth).fold(Tree(Vec::new()), |t, _| Tree(vec![t]));
    let fits = tree(MAX_NESTING / 2 - 1);
    assert_eq!(frame::decode_body::<Tree>(&encode(&fits)).unwrap(), fits);
    assert_eq!(
        frame::decode_body::<Tree>(&encode(&tree(MAX_NESTING / 2))),
        Err(DecodeError::TooDeep)
    );
}

#[test]
fn a_quarter_megabyte_of_nested_tags_is_refused_on_a_small_stack() {
    // 256 Ki `Neg` tags, then a `Lit`: without a limit, a quarter of a million stack frames.
    let mut body = vec![1u8; 256 << 10];
    body.extend_from_slice(&[0, 14]);
    let decoded = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || frame::decode_body::<Expr>(&body))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(decoded, Err(DecodeError::TooDeep));
}

#[test]
fn other_errors_stay_what_they_were() {
    let body = encode(&negations(3));
    assert_eq!(
        frame::decode_body::<Expr>(&body[..body.len() - 1]),
        Err(DecodeError::BodyTruncated)
    );
    assert_eq!(frame::decode_body::<Expr>(&[9]), Err(DecodeError::BadBody));
    let mut long = body.clone();
    long.push(0);
    assert_eq!(
        frame::decode_body::<Expr>(&long),
        Err(DecodeError::TrailingBytes(1))
    );
}
