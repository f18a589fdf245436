//! A fast, deterministic caption corpus in the flavour of `shapes` ("a small red circle above a
//! large blue square on a white background"), for benchmarks and tests that need many captions
//! without the grammar's cost: caption `i` is a pure function of `i`.

/// A deterministic caption of simple coloured shapes, e.g. "a small red circle above a large
/// blue square on a white background": a vocabulary of 38 words and many combinations, so that
/// postings are long and queries match thousands of documents, as with a real caption corpus.
pub fn indexed_caption(i: u64) -> String {
    const SIZES: [&str; 5] = ["small", "large", "big", "tiny", "medium"];
    const COLOURS: [&str; 9] = [
        "red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey",
    ];
    const SHAPES: [&str; 9] = [
        "circle",
        "square",
        "triangle",
        "star",
        "hexagon",
        "ellipse",
        "rectangle",
        "diamond",
        "cross",
    ];
    const RELATIONS: [&str; 8] = [
        "above", "below", "left of", "right of", "next to", "inside", "near", "touching",
    ];
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut pick = |n: usize| {
        // splitmix64: a fixed, fast mixer, so captions are reproducible without an RNG crate API.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n as u64) as usize
    };
    let mut text = format!(
        "a {} {} {} {} a {} {} {}",
        SIZES[pick(SIZES.len())],
        COLOURS[pick(COLOURS.len())],
        SHAPES[pick(SHAPES.len())],
        RELATIONS[pick(RELATIONS.len())],
        SIZES[pick(SIZES.len())],
        COLOURS[pick(COLOURS.len())],
        SHAPES[pick(SHAPES.len())],
    );
    if pick(2) == 0 {
        text.push_str(&format!(
            " on a {} background",
            COLOURS[pick(COLOURS.len())]
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_captions_are_deterministic_and_varied() {
        assert_eq!(indexed_caption(7), indexed_caption(7));
        let distinct: std::collections::HashSet<String> = (0..1000).map(indexed_caption).collect();
        assert!(distinct.len() > 950, "{}", distinct.len());
    }
}
