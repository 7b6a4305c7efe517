from tracker.cli import main

# Guarded: the ingester's writer process is started with multiprocessing's "spawn", which
# imports the parent's __main__ module (this one under `python -m tracker demo`).
if __name__ == "__main__":
    main()
