#ifndef DTF_VERSION_H
#define DTF_VERSION_H
#define DTF_VERSION "0.1.0"
#endif
