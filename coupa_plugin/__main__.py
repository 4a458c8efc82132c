from coupa_plugin.refhost import main

main()
