//! `lucid list`: the models in the local store, one per line on stdout,
//! then the user models made with `lucid create`.

use indicatif::HumanBytes;
use lucid_store::Store;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    let models = store.list()?;
    let users = store.user_models()?;
    if models.is_empty() && users.is_empty() {
        eprintln!(
            "no models in {}; pull one with `lucid pull smollm2`",
            store.home().display()
        );
        return Ok(());
    }
    let mut rows: Vec<[String; 4]> = models
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                HumanBytes(m.size).to_string(),
                m.license.clone(),
                m.path.display().to_string(),
            ]
        })
        .collect();
    // User models (`lucid create`): their weights are the model they are
    // made from.
    rows.extend(users.into_iter().map(|(name, user)| {
        [
            name,
            "-".to_owned(),
            "-".to_owned(),
            format!("(from {})", user.from),
        ]
    }));
    crate::table::print(["NAME", "SIZE", "LICENSE", "PATH"], &rows, &[1])
}
