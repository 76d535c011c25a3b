from claude_wrap.main import main

raise SystemExit(main())
