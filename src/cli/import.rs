//! `capsearch import-neuraltalk`.

use std::path::PathBuf;

use clap::Args;

use super::device::DeviceArg;

/// Import a pretrained NeuralTalk model (`flickr8k_cnn_lstm_v1.p`) as a capsearch model.
///
/// The pickle is read by a reader that executes no code (Python 2 protocols 0 and 2, Python 3
/// protocols 2-5). The model then decodes exactly as NeuralTalk's predict(). Without --vgg16 it
/// captions precomputed VGG-16 fc7 features (`capsearch caption --features feats.npy`); with
/// --vgg16 it captions images end to end.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// NeuralTalk checkpoint (a pickle saved by NeuralTalk's driver.py).
    #[arg(long)]
    pub pickle: PathBuf,
    /// Model directory to write.
    #[arg(long, default_value = "checkpoints/neuraltalk-flickr8k")]
    pub out: PathBuf,
    /// VGG-16 ImageNet weights (torchvision `vgg16-*.pth`, or safetensors with torchvision's
    /// tensor names), so the model captions raw images.
    #[arg(long)]
    pub vgg16: Option<PathBuf>,
    /// Compute device used while converting.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let (ckpt, vgg) =
        crate::import::captioner::import(&args.pickle, args.vgg16.as_deref(), &args.out, &device)?;
    println!("{}", ckpt.summary());
    if let Some(report) = vgg {
        println!(
            "VGG-16: {} tensors loaded from a {} file{}",
            report.loaded,
            report.format,
            if report.ignored.is_empty() {
                String::new()
            } else {
                format!(", ignored: {}", report.ignored.join(", "))
            }
        );
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
