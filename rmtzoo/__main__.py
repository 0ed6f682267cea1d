from rmtzoo.cli import main

raise SystemExit(main())
