from services.mailer.app import main

main()
