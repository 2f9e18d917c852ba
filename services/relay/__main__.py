from services.relay.app import main

main()
