"""``python -m hep_keras``: list the commands."""

from hep_keras.commands import COMMANDS


def main() -> None:
    print("usage: python -m hep_keras.<command> --help\n\ncommands:")
    width = max(map(len, COMMANDS))
    for name, what in COMMANDS.items():
        print(f"  {name:<{width}}  {what}")


if __name__ == "__main__":
    main()
