use super::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn space(dims: usize) -> VectorSpace {
    VectorSpace {
        dims,
        embedder: "test".into(),
    }
}

fn unit(i: usize, dims: usize) -> Vec<f32> {
    let mut v = vec![0.01; dims];
    v[i % dims] = 1.0;
    v
}

#[test]
fn nearest_finds_the_vector_itself_and_replaces_and_removes() {
    for storage in [VectorStorage::F16, VectorStorage::I8] {
        let mut store = VectorStore::new(space(8), storage, "id", 1).unwrap();
        for i in 0..8 {
            store.upsert(&format!("{i}.png"), &unit(i, 8)).unwrap();
        }
        let hits = store.nearest(&unit(3, 8), 3).unwrap();
        assert_eq!(hits[0].0, "3.png", "{storage}");
        assert!(hits[0].1 > 0.99, "{storage}: {hits:?}");
        // Re-indexing a path replaces its vector: 3.png now points where 5.png does, and
        // nothing is near its old direction any more.
        store.upsert("3.png", &unit(5, 8)).unwrap();
        assert_eq!(store.len(), 8);
        let hits = store.nearest(&unit(3, 8), 1).unwrap();
        assert!(hits[0].1 < 0.5, "{storage}: {hits:?}");
        let hits = store.nearest(&unit(5, 8), 2).unwrap();
        let mut near: Vec<&str> = hits.iter().map(|h| h.0.as_str()).collect();
        near.sort();
        assert_eq!(near, ["3.png", "5.png"], "{storage}");
        assert!(store.remove("5.png").unwrap());
        assert!(!store.remove("5.png").unwrap());
        let hits = store.nearest(&unit(5, 8), 1).unwrap();
        assert_eq!(hits[0].0, "3.png", "{storage}");
        assert_eq!(store.len(), 7);
        assert!(store.upsert("x.png", &[1.0; 3]).is_err());
        assert!(store.upsert("x.png", &[0.0; 8]).is_err(), "no direction");
        assert!(store.nearest(&[1.0; 3], 1).is_err());
    }
}

#[test]
fn holds_tells_whether_the_graph_has_exactly_a_stored_vector() {
    for storage in [VectorStorage::F16, VectorStorage::I8] {
        let mut store = VectorStore::new(space(16), storage, "id", 1).unwrap();
        let a = Unit::new(&unit(1, 16)).unwrap();
        let b = Unit::new(&unit(2, 16)).unwrap();
        store.upsert_units(&[("a.png", &a)]).unwrap();
        assert!(store.holds("a.png", &a), "{storage}");
        assert!(!store.holds("a.png", &b), "{storage}");
        assert!(!store.holds("b.png", &a), "{storage}");
        // A path given twice in one batch keeps the last.
        store.upsert_units(&[("a.png", &a), ("a.png", &b)]).unwrap();
        assert!(store.holds("a.png", &b) && store.len() == 1, "{storage}");
        // The bytes tantivy stores give back the same vector.
        assert_eq!(Unit::from_bytes(&b.to_bytes()), Some(b.clone()));
        assert_eq!(Unit::from_bytes(&[1, 2, 3]), None);
    }
}

/// Clustered non-negative vectors, like pooled CNN features.
fn clustered(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..16)
        .map(|_| (0..dims).map(|_| rng.random::<f32>()).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..centres.len())];
            c.iter()
                .map(|&x| (x + rng.random_range(-0.5f32..0.5)).max(0.0))
                .collect()
        })
        .collect()
}

#[test]
fn the_graph_finds_the_same_top_hits_as_an_exact_scan() {
    let dims = 64;
    let vectors = clustered(3000, dims, 1);
    let queries = clustered(50, dims, 2);
    for storage in [VectorStorage::F16, VectorStorage::I8] {
        let mut store = VectorStore::new(space(dims), storage, "id", 1).unwrap();
        let units: Vec<Unit> = vectors.iter().map(|v| Unit::new(v).unwrap()).collect();
        let paths: Vec<String> = (0..units.len()).map(|i| format!("{i:05}.png")).collect();
        let items: Vec<(&str, &Unit)> = paths.iter().map(|p| p.as_str()).zip(&units).collect();
        store.upsert_units(&items).unwrap();
        assert_eq!(store.len(), 3000);
        let mut found = 0;
        for q in &queries {
            let q = Unit::new(q).unwrap();
            let exact: Vec<u64> = store
                .search(&q, 10, true)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            let graph: Vec<u64> = store
                .search(&q, 10, false)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            assert_eq!(exact.len(), 10);
            found += graph.iter().filter(|k| exact.contains(k)).count();
        }
        let recall = found as f64 / (10.0 * queries.len() as f64);
        assert!(recall >= 0.95, "{storage}: recall@10 {recall}");
    }
}

#[test]
fn saves_and_loads_and_names_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(VECTOR_FILE);
    let mut store = VectorStore::new(space(64), VectorStorage::F16, "abc", 7).unwrap();
    for i in 0..40 {
        store.upsert(&format!("{i}.png"), &unit(i, 64)).unwrap();
    }
    store.remove("39.png").unwrap();
    store.save(&file).unwrap();
    assert!(!store.dirty);
    let loaded = VectorStore::load(&file).unwrap();
    assert_eq!((loaded.opstamp, loaded.index_id.as_str()), (7, "abc"));
    assert_eq!(loaded.space, space(64));
    assert_eq!(loaded.len(), 39);
    assert_eq!(loaded.nearest(&unit(2, 64), 1).unwrap()[0].0, "2.png");
    assert!(loaded.holds("5.png", &Unit::new(&unit(5, 64)).unwrap()));
    let summary = VectorStore::summary(&file).unwrap();
    assert_eq!(
        summary,
        VectorFileSummary {
            index_id: "abc".into(),
            opstamp: 7,
            space: space(64),
            storage: VectorStorage::F16,
            count: 39
        }
    );
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [VECTOR_FILE]);

    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
    let err = VectorStore::summary(&file).err().unwrap().to_string();
    assert!(err.contains("cut short"), "{err}");
    let err = VectorStore::load(&file).err().unwrap().to_string();
    assert!(
        err.contains("cut short") && err.contains(VECTOR_FILE),
        "{err}"
    );
    // Cut in the graph, with the header and end marker put back: the sizes disagree.
    let mut cut = bytes[..100].to_vec();
    cut.extend_from_slice(&bytes[bytes.len() - 40..]);
    std::fs::write(&file, &cut).unwrap();
    assert!(VectorStore::load(&file).is_err());
    std::fs::write(&file, b"something else").unwrap();
    let err = VectorStore::load(&file).err().unwrap().to_string();
    assert!(err.contains("not a capsearch vector file"), "{err}");
}
