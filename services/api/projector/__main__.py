from services.api.projector.app import main

main()
