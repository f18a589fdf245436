//! The caption grammar: varied templates and synonyms that say different subsets of a scene's truth.

use rand::seq::IndexedRandom;
use rand::{Rng, RngExt};

use super::scene::{Background, Color, Kind, Pattern, Scene, Shape, Tone, sample_scene};

fn pick<'a, R: Rng + ?Sized>(rng: &mut R, options: &[&'a str]) -> &'a str {
    options.choose(rng).copied().unwrap_or("")
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn with_article(phrase: String) -> String {
    format!("{} {phrase}", article(&phrase))
}

fn kind_word<R: Rng + ?Sized>(rng: &mut R, kind: Kind, plural: bool) -> &'static str {
    let names = kind.names();
    // The plain name most of the time, a synonym otherwise.
    let (s, p) = if rng.random_bool(0.6) {
        names[0]
    } else {
        *names.choose(rng).unwrap_or(&names[0])
    };
    if plural { p } else { s }
}

/// "large red circle" (with the size when `with_size`), no article.
fn noun_phrase<R: Rng + ?Sized>(rng: &mut R, s: &Shape, with_size: bool) -> String {
    let color = pick(rng, s.color.names());
    let kind = kind_word(rng, s.kind, false);
    if with_size {
        format!("{} {color} {kind}", pick(rng, s.size.names()))
    } else {
        format!("{color} {kind}")
    }
}

fn position_phrase<R: Rng + ?Sized>(rng: &mut R, cell: (u8, u8)) -> String {
    let options: &[&str] = match cell {
        (0, 0) => &[
            "in the top left corner",
            "at the top left",
            "in the upper left",
        ],
        (0, 1) => &["at the top", "near the top", "at the top of the image"],
        (0, 2) => &[
            "in the top right corner",
            "at the top right",
            "in the upper right",
        ],
        (1, 0) => &["on the left", "on the left side", "near the left edge"],
        (1, 1) => &[
            "in the center",
            "in the middle",
            "in the center of the image",
        ],
        (1, 2) => &["on the right", "on the right side", "near the right edge"],
        (2, 0) => &[
            "in the bottom left corner",
            "at the bottom left",
            "in the lower left",
        ],
        (2, 1) => &[
            "at the bottom",
            "near the bottom",
            "at the bottom of the image",
        ],
        _ => &[
            "in the bottom right corner",
            "at the bottom right",
            "in the lower right",
        ],
    };
    pick(rng, options).to_string()
}

fn background_phrase<R: Rng + ?Sized>(rng: &mut R, bg: &Background) -> String {
    let tone = match bg.tone {
        Tone::Dark => pick(rng, &["dark", "black", "dark gray"]),
        Tone::Light => pick(rng, &["light", "pale", "light gray"]),
    };
    let pattern = match bg.pattern {
        Pattern::Plain => pick(rng, &["", "plain"]),
        Pattern::Gradient => pick(rng, &["shaded", "gradient"]),
        Pattern::Stripes => pick(rng, &["striped"]),
        Pattern::Checks => pick(rng, &["checkered", "checked"]),
    };
    let noun = pick(rng, &["background", "backdrop"]);
    let preposition = pick(rng, &["on", "against"]);
    let words: Vec<&str> = [tone, pattern]
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect();
    let adjectives = words.join(" ");
    format!(
        "{preposition} {}",
        with_article(format!("{adjectives} {noun}"))
    )
}

/// Relation of `a` to `b` ("to the left of", "above", ...), from the centres.
fn relation<R: Rng + ?Sized>(rng: &mut R, a: &Shape, b: &Shape) -> &'static str {
    let dx = a.x - b.x;
    let dy = a.y - b.y;
    let horizontal = if dx.abs() > dy.abs() + 0.05 {
        true
    } else if dy.abs() > dx.abs() + 0.05 {
        false
    } else {
        rng.random_bool(0.5)
    };
    if horizontal {
        if dx < 0.0 {
            pick(rng, &["to the left of", "left of", "beside"])
        } else {
            pick(rng, &["to the right of", "right of", "next to"])
        }
    } else if dy < 0.0 {
        pick(rng, &["above", "over"])
    } else {
        pick(rng, &["below", "under", "beneath"])
    }
}

fn number_word(n: usize) -> &'static str {
    match n {
        1 => "one",
        2 => "two",
        _ => "three",
    }
}

/// Shapes grouped by (colour, kind), in first-seen order: "two red circles", "a blue square".
fn group_phrases<R: Rng + ?Sized>(rng: &mut R, shapes: &[Shape]) -> Vec<String> {
    let mut groups: Vec<(Kind, Color, Vec<&Shape>)> = Vec::new();
    for s in shapes {
        match groups.iter_mut().find(|g| g.0 == s.kind && g.1 == s.color) {
            Some(g) => g.2.push(s),
            None => groups.push((s.kind, s.color, vec![s])),
        }
    }
    groups
        .into_iter()
        .map(|(kind, color, members)| {
            let same_size = members.iter().all(|m| m.size == members[0].size);
            let size = if same_size && rng.random_bool(0.5) {
                format!("{} ", pick(rng, members[0].size.names()))
            } else {
                String::new()
            };
            let color = pick(rng, color.names());
            if members.len() == 1 {
                with_article(format!("{size}{color} {}", kind_word(rng, kind, false)))
            } else {
                format!(
                    "{} {size}{color} {}",
                    number_word(members.len()),
                    kind_word(rng, kind, true)
                )
            }
        })
        .collect()
}

fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn one_shape_caption<R: Rng + ?Sized>(rng: &mut R, scene: &Scene) -> String {
    let s = &scene.shapes[0];
    let np = with_article(noun_phrase(rng, s, true));
    let np_plain = with_article(noun_phrase(rng, s, false));
    let pos = position_phrase(rng, s.cell);
    match rng.random_range(0..9) {
        0 => format!("{np} {pos}"),
        1 => format!("there is {np} {pos}"),
        2 => format!("{np} {}", background_phrase(rng, &scene.background)),
        3 => format!("{pos} there is {np_plain}"),
        4 => format!("a single {} {pos}", noun_phrase(rng, s, true)),
        5 => format!("one {} {pos}", noun_phrase(rng, s, false)),
        6 => format!("{np} {pos} {}", background_phrase(rng, &scene.background)),
        7 => format!(
            "{np_plain} {} {pos}",
            pick(rng, &["placed", "sitting", "drawn"])
        ),
        _ => format!("an image of {np}"),
    }
}

fn two_shape_caption<R: Rng + ?Sized>(rng: &mut R, scene: &Scene) -> String {
    let (a, b) = (&scene.shapes[0], &scene.shapes[1]);
    let same = a.kind == b.kind && a.color == b.color;
    let with_size = rng.random_bool(0.6);
    let np_a = with_article(noun_phrase(rng, a, with_size));
    let np_b = with_article(noun_phrase(rng, b, with_size));
    let rel = relation(rng, a, b);
    let choice = rng.random_range(0..if same { 9 } else { 7 });
    match choice {
        0 => format!("{np_a} {rel} {np_b}"),
        1 => format!("{np_b} {} {np_a}", relation(rng, b, a)),
        2 => format!("{np_a} and {np_b}"),
        3 => format!("two shapes: {np_a} and {np_b}"),
        4 => format!(
            "{np_a} {rel} {np_b} {}",
            background_phrase(rng, &scene.background)
        ),
        5 => format!("there is {np_a} {rel} {np_b}"),
        6 => format!(
            "{np_a} {} and {np_b} {}",
            position_phrase(rng, a.cell),
            position_phrase(rng, b.cell)
        ),
        _ => {
            let color = pick(rng, a.color.names());
            let kinds = kind_word(rng, a.kind, true);
            let horizontal = (a.x - b.x).abs() >= (a.y - b.y).abs();
            let arrangement = if horizontal {
                pick(rng, &["side by side", "next to each other"])
            } else {
                pick(rng, &["one above the other", "stacked vertically"])
            };
            if choice == 7 {
                format!("two {color} {kinds} {arrangement}")
            } else {
                format!(
                    "{} {color} {kinds} {}",
                    pick(rng, &["a pair of", "two"]),
                    background_phrase(rng, &scene.background)
                )
            }
        }
    }
}

fn three_shape_caption<R: Rng + ?Sized>(rng: &mut R, scene: &Scene) -> String {
    let groups = group_phrases(rng, &scene.shapes);
    let list = join_list(&groups);
    let (a, b, c) = (&scene.shapes[0], &scene.shapes[1], &scene.shapes[2]);
    match rng.random_range(0..7) {
        0 => list,
        1 => format!("three shapes: {list}"),
        2 => format!("{list} {}", background_phrase(rng, &scene.background)),
        3 => format!("there are three shapes, {list}"),
        4 => format!(
            "{} {} {} and {} {}",
            with_article(noun_phrase(rng, a, false)),
            relation(rng, a, b),
            with_article(noun_phrase(rng, b, false)),
            with_article(noun_phrase(rng, c, true)),
            position_phrase(rng, c.cell)
        ),
        5 => format!(
            "{} {}, {} and {}",
            with_article(noun_phrase(rng, a, true)),
            position_phrase(rng, a.cell),
            with_article(noun_phrase(rng, b, false)),
            with_article(noun_phrase(rng, c, false))
        ),
        _ => format!(
            "{list} {}",
            pick(rng, &["together", "in a picture", "scattered around"])
        ),
    }
}

/// One true caption of a scene, from a randomly chosen template.
pub fn caption<R: Rng + ?Sized>(rng: &mut R, scene: &Scene) -> String {
    let raw = match scene.shapes.len() {
        0 => "an empty background".to_string(),
        1 => one_shape_caption(rng, scene),
        2 => two_shape_caption(rng, scene),
        _ => three_shape_caption(rng, scene),
    };
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `n` different true captions of a scene (fewer only if the templates cannot produce `n`
/// different ones in many tries, which does not happen for `n` ≤ 5).
pub fn captions<R: Rng + ?Sized>(rng: &mut R, scene: &Scene, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(n);
    for _ in 0..n * 40 {
        if out.len() == n {
            break;
        }
        let c = caption(rng, scene);
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// A caption of a fresh random scene: a draw from the dataset's caption distribution.
pub fn random_caption<R: Rng + ?Sized>(rng: &mut R) -> String {
    let scene = sample_scene(rng);
    caption(rng, &scene)
}
