//! `cox image import|pull|ls`: the node agent's local image store.
//!
//! `import` puts an OCI image layout directory, or a `.tar` archive of one (`skopeo copy
//! … oci-archive:`, `docker buildx … type=oci`), into the content-addressed store under the
//! agent's root: each layer's sha256 is checked and it is unpacked once into
//! `<root>/images/layers/<sha256>` (a layer already there, from this image or another, is
//! not unpacked again), and the name is recorded, so a pod on this node can say
//! `image: NAME` at once — a running agent reads the record when it next starts a container.
//! `pull` fetches an image from the OCI registry its reference names (as the agent does for
//! a pod whose image is not here) into the same store. `ls` lists the recorded names.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::images::{LocalImageStore, RegistryPuller};
use coxswain_node_agent::mounts::SystemMounter;

/// Arguments of `cox image`.
#[derive(Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import an OCI image layout directory or a .tar of one into the agent's store.
    Import(ImportArgs),
    /// Pull an image from its registry (`host[:port]/repo:tag`) into the agent's store.
    Pull(PullArgs),
    /// List the images in the agent's store.
    Ls(LsArgs),
}

/// The agent root the store lives under.
#[derive(Args)]
struct StoreArgs {
    /// The agent's state directory (as given to `cox agent --root`).
    #[arg(long, default_value = "/var/lib/coxswain/agent")]
    root: PathBuf,
}

#[derive(Args)]
struct ImportArgs {
    /// An OCI image layout directory (index.json, blobs/) or a tar archive of one.
    path: PathBuf,
    /// The name pods use as `image:` (default: the layout's
    /// org.opencontainers.image.ref.name).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct PullArgs {
    /// The image reference, naming its registry: `nvcr.io/nvidia/pytorch:24.01-py3`.
    image: String,
    /// A registry (`HOST:PORT`) reached over plain HTTP instead of HTTPS (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct LsArgs {
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs `cox image`.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    match args.command {
        ImageCommand::Import(args) => import(args),
        ImageCommand::Pull(args) => pull(args),
        ImageCommand::Ls(args) => ls(args),
    }
}

fn store(args: &StoreArgs) -> LocalImageStore {
    let config = AgentConfig::new(&args.root);
    LocalImageStore::new(config.images_dir(), std::sync::Arc::new(SystemMounter))
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.name {
        check_name(name)?;
    }
    if !args.path.exists() {
        bail!("{}: no such file or directory", args.path.display());
    }
    if !running_as_root() {
        bail!("cox image import must run as root: layers keep their files' owners");
    }
    let imported = store(&args.store)
        .import(args.name.as_deref(), &args.path)
        .with_context(|| format!("importing {}", args.path.display()))?;
    print_imported(&imported);
    Ok(())
}

fn pull(args: PullArgs) -> anyhow::Result<()> {
    if !coxswain_node_agent::images::registry::names_registry(&args.image) {
        bail!(
            "{}: name the registry (host[:port]/repo:tag); short names are not pulled",
            args.image
        );
    }
    if !running_as_root() {
        bail!("cox image pull must run as root: layers keep their files' owners");
    }
    let puller = RegistryPuller::new(args.insecure_registries.clone());
    let imported = store(&args.store).with_registry(puller).pull(&args.image)?;
    print_imported(&imported);
    Ok(())
}

fn print_imported(imported: &coxswain_node_agent::images::Imported) {
    let image = &imported.image;
    let layers = image.layers.len();
    println!(
        "{} {} ({layers} layer{}: {} unpacked, {} already present)",
        image.name,
        image.digest,
        if layers == 1 { "" } else { "s" },
        imported.unpacked,
        layers - imported.unpacked.min(layers),
    );
}

/// Image names are references: no spaces or control characters, not empty.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("--name {name:?}: an image name is a reference like app:1 (no spaces)");
    }
    if name == coxswain_node_agent::images::HOST_IMAGE {
        bail!("--name host: `host` is reserved for the host's root filesystem");
    }
    Ok(())
}

fn ls(args: LsArgs) -> anyhow::Result<()> {
    let images = store(&args.store).list().with_context(|| {
        format!(
            "reading the image store under {}",
            args.store.root.display()
        )
    })?;
    if images.is_empty() {
        eprintln!("No images (import one with `cox image import PATH`).");
        return Ok(());
    }
    let rows: Vec<[String; 3]> = images
        .iter()
        .map(|i| {
            let digest = if i.digest.is_empty() {
                "<directory>".to_string()
            } else {
                i.digest.clone()
            };
            [i.name.clone(), digest, i.layers.len().to_string()]
        })
        .collect();
    let width = |col: usize, head: &str| {
        rows.iter()
            .map(|r| r[col].len())
            .chain([head.len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0, "NAME"), width(1, "DIGEST"));
    println!("{:<w0$}   {:<w1$}   LAYERS", "NAME", "DIGEST");
    for [name, digest, layers] in rows {
        println!("{name:<w0$}   {digest:<w1$}   {layers}");
    }
    Ok(())
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
