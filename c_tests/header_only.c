/*
 * The header on its own: compiled as C11 with -Wall -Wextra -Werror
 * -pedantic, included twice (the include guard), nothing else included
 * first.
 */
#include "simple_ml.h"
#include "simple_ml.h"

int main(void) {
    const sml_status ok = SML_OK;
    const sml_data empty = {NULL, NULL, 0, 0};
    sml_epoch_callback callback = NULL;
    (void)empty;
    (void)callback;
    return sml_status_str(ok)[0] == 'S' ? 0 : 1;
}
