from freeapi.cli import main

raise SystemExit(main())
