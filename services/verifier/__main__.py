from services.verifier.app import main

# Guarded: the check workers are spawned processes that import modules afresh.
if __name__ == "__main__":
    main()
